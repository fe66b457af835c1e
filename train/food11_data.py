"""Download the real Food-11 archive once and lay it out the way training reads it.

    python food11_data.py prepare --dest DIR [--url URL] [--expect-counts training=N,...]

The archive holds three flat folders, training/, validation/ and evaluation/, of files named
`<class index>_<n>.jpg`. `prepare` streams it to a temporary file beside DIR, checks that
the download is complete and the zip intact, checks every split, file name and count, and
copies the photos into DIR/<split>/<class folder>/ (the ImageFolder layout of dataset.py).
It writes into a temporary folder and renames it to DIR only when all of that passed, so DIR
either is complete (with a marker file) or does not exist. With DIR complete it does nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath

from dataset import SPLITS, DataError, check_dataset

from app.food11 import CLASS_NAMES, folder_name

URL = "https://nyu.box.com/shared/static/m5kvcl25hfpljul3elhu6xz8y2w61op4.zip"
# Images per split in the real archive (16,643 in all).
COUNTS: dict[str, int] = {"training": 9866, "validation": 3430, "evaluation": 3347}
MARKER = ".food11-complete.json"  # written last: its presence means the folder is complete
FILE_NAME = re.compile(r"(\d+)_(\d+)\.jpe?g", re.IGNORECASE)
CHUNK = 1 << 20


class PrepareError(DataError):
    """The archive or the destination is not what preparing Food-11 needs."""


def is_prepared(dest: Path) -> bool:
    """Whether dest holds a dataset that prepare() completed."""
    return (Path(dest) / MARKER).is_file()


def download(url: str, target: Path, timeout_s: float = 60.0) -> int:
    """Stream url into target; return its size. A short read is an error, not a file."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(target, "wb") as out:
            expected = int(response.headers.get("Content-Length") or -1)
            done, last = 0, time.monotonic()
            while chunk := response.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if time.monotonic() - last > 10:
                    total = f" of {expected / 1e6:.0f}" if expected > 0 else ""
                    print(f"[download] {done / 1e6:.0f}{total} MB", flush=True)
                    last = time.monotonic()
    except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, a cut body
        raise PrepareError(f"download of {url} failed: {err}") from None
    if expected >= 0 and done != expected:
        raise PrepareError(f"download of {url} truncated: got {done} of {expected} bytes")
    return done


def _split_of(name: str) -> tuple[str, str] | None:
    """(split, file name) of an archive member inside a split folder, else None."""
    path = PurePosixPath(name)
    if name.endswith("/") or "__MACOSX" in path.parts or path.name.startswith("."):
        return None
    if len(path.parts) >= 2 and path.parts[-2] in SPLITS:
        return path.parts[-2], path.name
    return None


def plan(archive: zipfile.ZipFile, expect: dict[str, int]) -> list[tuple[str, Path]]:
    """Check the archive's splits, file names and counts; return (member, relative target)."""
    moves, counts, per_class = [], Counter(), Counter()
    prefixes: dict[str, set[str]] = {split: set() for split in SPLITS}
    for name in archive.namelist():
        found = _split_of(name)
        if found is None:
            continue
        split, file = found
        match = FILE_NAME.fullmatch(file)
        if not match:
            raise PrepareError(f"unexpected file {name} in the archive (want <class>_<n>.jpg)")
        index = int(match.group(1))
        if index >= len(CLASS_NAMES):
            raise PrepareError(f"unknown class index {index} in {name} "
                               f"(Food-11 has classes 0-{len(CLASS_NAMES) - 1})")
        prefixes[split].add(str(PurePosixPath(name).parent))
        counts[split] += 1
        per_class[split, index] += 1
        moves.append((name, Path(split) / folder_name(CLASS_NAMES[index]) / file))
    for split in SPLITS:
        if not counts[split]:
            raise PrepareError(f"the archive has no {split}/ folder of images")
        if len(prefixes[split]) > 1:
            raise PrepareError(f"the archive has several {split}/ folders: "
                               f"{sorted(prefixes[split])}")
        if counts[split] != expect[split]:
            raise PrepareError(f"{split}/ holds {counts[split]} images, expected "
                               f"{expect[split]}: not the Food-11 archive, or an incomplete one")
        missing = [CLASS_NAMES[i] for i in range(len(CLASS_NAMES)) if not per_class[split, i]]
        if missing:
            raise PrepareError(f"{split}/ has no images of {', '.join(missing)}")
    return moves


def extract(archive_path: Path, target: Path, expect: dict[str, int]) -> dict[str, int]:
    """Check the zip, copy its photos into target in ImageFolder layout; return the counts."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            bad = archive.testzip()  # reads every member and checks its CRC
            if bad is not None:
                raise PrepareError(f"corrupt member {bad} in the downloaded archive")
            moves = plan(archive, expect)
            for folder in {rel.parent for _, rel in moves}:
                (target / folder).mkdir(parents=True, exist_ok=True)
            for member, rel in moves:
                with archive.open(member) as src, open(target / rel, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    except (zipfile.BadZipFile, EOFError) as err:
        raise PrepareError(f"the download is not a complete zip archive ({err}): "
                           "truncated or corrupt") from None
    counts = check_dataset(target)
    if counts != expect:
        raise PrepareError(f"prepared counts {counts} differ from the expected {expect}")
    return counts


def prepare(url: str, dest: Path, expect: dict[str, int] | None = None) -> bool:
    """Make dest the prepared dataset; return False when it already was (nothing done)."""
    dest, expect = Path(dest), dict(expect or COUNTS)
    if is_prepared(dest):
        print(f"[prepare] {dest} is already complete ({(dest / MARKER).read_text().strip()}); "
              "nothing to do", flush=True)
        return False
    if dest.is_dir() and not any(dest.iterdir()):
        pass  # an empty folder (a mount point, say): the rename below replaces it
    elif dest.exists():
        raise PrepareError(f"{dest} exists but was not completed by prepare "
                           f"(no {MARKER}): remove it and run again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Both temporary paths sit beside dest, on the same file system, so the rename is atomic.
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}-", suffix=".zip", dir=dest.parent)
    os.close(fd)
    archive, staging = Path(name), Path(tempfile.mkdtemp(prefix=f".{dest.name}-",
                                                        suffix=".partial", dir=dest.parent))
    try:
        start = time.monotonic()
        size = download(url, archive)
        print(f"[prepare] downloaded {size / 1e6:.1f} MB in {time.monotonic() - start:.0f} s",
              flush=True)
        counts = extract(archive, staging, expect)
        (staging / MARKER).write_text(json.dumps({"url": url, "counts": counts}) + "\n")
        staging.rename(dest)
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    print(f"[prepare] {dest} is ready: {counts}", flush=True)
    return True


def parse_counts(text: str) -> dict[str, int]:
    """'training=9866,validation=3430,evaluation=3347' -> counts of every split."""
    try:
        counts = {k.strip(): int(v) for k, v in (part.split("=") for part in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"want split=count,... got {text!r}") from None
    if set(counts) != set(SPLITS):
        raise argparse.ArgumentTypeError(f"give a count for each of {', '.join(SPLITS)}")
    return counts


def parser() -> argparse.ArgumentParser:
    """The command line: one command, `prepare`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("prepare", help="download, check and lay out Food-11 (once)")
    cmd.add_argument("--url", default=URL, help="the Food-11 zip archive")
    cmd.add_argument("--dest", type=Path, required=True, help="folder to create (FOOD11_DATA_DIR)")
    cmd.add_argument("--expect-counts", type=parse_counts, default=COUNTS,
                     help="images per split, default the real archive's "
                          + ",".join(f"{k}={v}" for k, v in COUNTS.items()))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `prepare`; exit 0 when the data is ready, 2 with one error line if not."""
    args = parser().parse_args(argv)
    try:
        prepare(args.url, args.dest, args.expect_counts)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
