"""The training image's tag: a hash of the files the image is built from.

    python train/image_tag.py [--root REPO] [--gpu]

The tag is the first 12 hex digits of the SHA-256 of the lines "<sha256 of file>  <path>",
one per file, sorted by path: the app files that train/Dockerfile copies (the serving
contract app/food11.py, and the client, settings and sample photos that live_users.py plays)
and every file under train/ (train/Dockerfile and train/requirements.txt included), without
__pycache__/ folders and *.pyc files, as train/Dockerfile.dockerignore leaves them out of the
build. The `image` step of
workflows/build-train-image.yaml computes the same with busybox, in the cluster, on a fresh
clone; tests/test_image_tag.py runs that shell line and checks that both agree.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

# What the image is built from (repository-relative, as train/Dockerfile COPYs them).
SOURCES: tuple[str, ...] = ("app/client.py", "app/config.py", "app/food11.py", "app/samples",
                           "train")
REPOSITORY = "gourmetgram-train"  # the training image's name in the cluster registry
CUDA_SUFFIX = "-cuda"  # build-train-image -p gpu=true installs CUDA wheels
TAG_LENGTH = 12
SKIPPED_DIR = "__pycache__"
SKIPPED_SUFFIX = ".pyc"


def image_files(root: Path) -> list[str]:
    """The repository-relative paths hashed into the tag, in the order the shell sorts them."""
    found = []
    for source in SOURCES:
        top = root / source
        if not top.exists():
            raise FileNotFoundError(f"{top} is missing: is {root} the repository root?")
        for path in [top] if top.is_file() else top.rglob("*"):
            rel = path.relative_to(root).as_posix()
            if not path.is_file() or path.suffix == SKIPPED_SUFFIX:
                continue
            if SKIPPED_DIR in path.relative_to(root).parts[:-1]:
                continue
            if not rel.isascii() or "\n" in rel:
                raise ValueError(f"{rel!r}: file names in the image must be ASCII on one line")
            found.append(rel)
    return sorted(found)  # code-point order: the same as `LC_ALL=C sort` for ASCII


def content_tag(root: Path) -> str:
    """The tag for the image built from root (without the CUDA suffix)."""
    lines = "".join(f"{hashlib.sha256((root / rel).read_bytes()).hexdigest()}  {rel}\n"
                    for rel in image_files(root))
    return hashlib.sha256(lines.encode()).hexdigest()[:TAG_LENGTH]


def image_tag(root: Path, gpu: bool = False) -> str:
    """The tag of the CPU image, or of the CUDA image with gpu=True."""
    return content_tag(root) + (CUDA_SUFFIX if gpu else "")


def main(argv: list[str] | None = None) -> int:
    """Print the tag the cluster gives the training image built from this checkout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the repository root (default: this checkout)")
    parser.add_argument("--gpu", action="store_true", help="the CUDA image's tag")
    args = parser.parse_args(argv)
    print(image_tag(args.root, args.gpu))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
