"""The training image's content tag: train/image_tag.py and the cluster's busybox shell agree.

The `image` step of workflows/build-train-image.yaml runs in the cluster with busybox; here
the same script runs under Debian's busybox against a real registry (Debian's
docker-registry, the CNCF distribution server) on loopback.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import image_tag
import pytest

from app.localserver import free_port
from tests import argo_validate as validate

REPO = Path(__file__).resolve().parent.parent
DOCS = list(validate.documents(REPO / "workflows"))
BUSYBOX = shutil.which("busybox")
REGISTRY_BIN = shutil.which("docker-registry")
MISSING = ("busybox and docker-registry are Debian packages that "
           "tools/install_system_packages.sh installs")


def template(wft: str, name: str) -> dict:
    """One template of a WorkflowTemplate."""
    (doc,) = [d for _, d in DOCS if d["metadata"]["name"] == wft]
    return next(t for t in doc["spec"]["templates"] if t["name"] == name)


IMAGE_STEP = template("build-train-image", "image")
SCRIPT = IMAGE_STEP["container"]["args"][0]
ENV = {e["name"]: e["value"] for e in IMAGE_STEP["container"]["env"]}


def tag_line(script: str = SCRIPT) -> str:
    """The three lines of the image step that name the sources, list the files, hash them."""
    lines = [x.strip() for x in script.splitlines()
             if x.strip().startswith(("sources=", "files=", "tag="))]
    assert [x.split("=")[0] for x in lines] == ["sources", "files", "tag"], lines
    return "\n".join(lines)


def shell_tag(root: Path, line: str | None = None) -> str:
    """The tag that the image step's own line computes in root, under busybox sh."""
    assert BUSYBOX, MISSING
    script = f"{line or tag_line()}\necho \"$tag\""
    out = subprocess.run([BUSYBOX, "sh", "-c", script], cwd=root, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tracked files of this checkout (what Argo's git clone holds), with local edits."""
    root = tmp_path_factory.mktemp("clone")
    files = subprocess.run(["git", "ls-files", "-z", "--", *image_tag.SOURCES], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    archive = root / "src.tar"
    with tarfile.open(archive, "w") as tar:
        for name in filter(None, files):
            if (REPO / name).is_file():
                tar.add(REPO / name, arcname=name)
    with tarfile.open(archive) as tar:
        tar.extractall(root / "src", filter="data")
    return root / "src"


def test_shell_and_python_agree_on_this_repository(clone: Path) -> None:
    tag = image_tag.content_tag(clone)
    assert len(tag) == image_tag.TAG_LENGTH and int(tag, 16) >= 0
    assert shell_tag(clone) == tag


def test_the_tag_follows_the_content_and_nothing_else(clone: Path, tmp_path: Path) -> None:
    root = tmp_path / "src"
    shutil.copytree(clone, root)
    before = image_tag.content_tag(root)
    # Bytecode and caches are not part of the image (train/Dockerfile.dockerignore).
    (root / "train" / "__pycache__").mkdir(exist_ok=True)
    (root / "train" / "__pycache__" / "flow.cpython-311.pyc").write_bytes(b"x")
    (root / "train" / "stray.pyc").write_bytes(b"x")
    (root / "README.md").write_text("outside train/: not in the image\n")
    assert image_tag.content_tag(root) == shell_tag(root) == before
    # Every input of the image changes the tag: code, Dockerfile, requirements, contract.
    seen = {before}
    for rel in ("train/flow.py", "train/Dockerfile", "train/requirements.txt",
                "app/food11.py", "app/client.py", "app/samples/Dairy product.jpg"):
        with open(root / rel, "a") as f:
            f.write("\n")
        tag = image_tag.content_tag(root)
        assert tag not in seen, rel
        assert shell_tag(root) == tag, rel
        seen.add(tag)
    (root / "train" / "new_module.py").write_text("X = 1\n")
    assert image_tag.content_tag(root) not in seen
    assert shell_tag(root) == image_tag.content_tag(root)


def test_the_comparison_can_fail(clone: Path) -> None:
    """Mutated shell lines (unsorted, without the contract, other length) give another tag."""
    right = shell_tag(clone)
    line = tag_line()
    for wrong in (line.replace(" | LC_ALL=C sort", ""), line.replace("-c1-12", "-c1-10"),
                  line.replace(" app/food11.py", ""), line.replace(" app/samples", ""),
                  line.replace(" | tr '\\n' '\\0' | xargs -0", " | xargs")):
        assert wrong != line
        assert shell_tag(clone, wrong) != right, wrong


def test_python_rejects_names_the_shell_would_split(tmp_path: Path) -> None:
    for rel in image_tag.SOURCES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        if "." in rel:
            (tmp_path / rel).write_text("")
        else:
            (tmp_path / rel).mkdir()
    (tmp_path / "train" / "my\nfile.py").write_text("")
    with pytest.raises(ValueError, match="on one line"):
        image_tag.content_tag(tmp_path)
    with pytest.raises(FileNotFoundError, match="repository root"):
        image_tag.content_tag(tmp_path / "train")


def test_cli_prints_the_tag_and_the_cuda_tag(capsys: pytest.CaptureFixture[str]) -> None:
    assert image_tag.main(["--root", str(REPO)]) == 0
    assert image_tag.main(["--root", str(REPO), "--gpu"]) == 0
    cpu, gpu = capsys.readouterr().out.split()
    assert cpu == image_tag.content_tag(REPO) and gpu == cpu + image_tag.CUDA_SUFFIX


# ---- the whole image step, against a real registry -------------------------------------

@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real distribution registry on loopback (plain HTTP, like the cluster's)."""
    assert REGISTRY_BIN, MISSING
    root = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    (root / "config.yml").write_text(json.dumps({
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": address}}))
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(root / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://{address}/v2/", timeout=2)
            break
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline and proc.poll() is None, "registry did not start"
            time.sleep(0.2)
    yield address
    proc.terminate()
    proc.wait(timeout=10)


def push_empty_image(address: str, repository: str, tag: str) -> None:
    """Push a config blob and an OCI manifest naming it, through the registry's HTTP API."""
    config = b"{}"
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    start = urllib.request.Request(f"http://{address}/v2/{repository}/blobs/uploads/",
                                   method="POST")
    location = urllib.request.urlopen(start).headers["Location"]
    if location.startswith("/"):
        location = f"http://{address}{location}"
    joiner = "&" if "?" in location else "?"
    urllib.request.urlopen(urllib.request.Request(
        f"{location}{joiner}digest={digest}", data=config, method="PUT",
        headers={"Content-Type": "application/octet-stream"}))
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": digest, "size": len(config)}, "layers": []}
    urllib.request.urlopen(urllib.request.Request(
        f"http://{address}/v2/{repository}/manifests/{tag}", method="PUT",
        data=json.dumps(manifest).encode(),
        headers={"Content-Type": manifest["mediaType"]}))


def run_image_step(clone: Path, out: Path, registry: str, gpu: str) -> subprocess.CompletedProcess:
    """The image step's script under busybox sh, with the container's env."""
    assert BUSYBOX, MISSING
    out.mkdir(exist_ok=True)
    env = {**ENV, "SOURCE": str(clone), "OUT": str(out), "GPU": gpu, "REGISTRY": registry,
           "PATH": f"{Path(BUSYBOX).parent}:/bin"}
    # busybox runs its own applets (find, sort, sha256sum, wget) before any binary on PATH.
    env["PATH"] = f"{setup_applets(out.parent)}:{env['PATH']}"
    return subprocess.run([BUSYBOX, "sh", "-c", SCRIPT], env=env, capture_output=True,
                          text=True)


def setup_applets(where: Path) -> Path:
    """A folder of busybox applet links, so the script uses busybox's wget and find."""
    folder = where / "applets"
    if not folder.exists():
        folder.mkdir()
        for applet in ("find", "sort", "xargs", "sha256sum", "cut", "wget", "grep", "cat"):
            (folder / applet).symlink_to(BUSYBOX)
    return folder


def test_image_step_reports_missing_then_present(clone: Path, tmp_path: Path,
                                                 registry: str) -> None:
    tag = image_tag.content_tag(clone)
    for gpu, suffix in (("false", ""), ("true", image_tag.CUDA_SUFFIX)):
        out = tmp_path / f"missing-{gpu}"
        result = run_image_step(clone, out, registry, gpu)
        assert result.returncode == 0, result.stderr
        image = f"{registry}/{image_tag.REPOSITORY}:{tag}{suffix}"
        assert (out / "image").read_text() == image
        assert (out / "exists").read_text() == "false"
        assert "gets built first" in result.stdout
        push_empty_image(registry, image_tag.REPOSITORY, tag + suffix)
        out = tmp_path / f"present-{gpu}"
        result = run_image_step(clone, out, registry, gpu)
        assert result.returncode == 0, result.stderr
        assert (out / "exists").read_text() == "true"
        assert "no build needed" in result.stdout


def test_image_step_fails_fast_when_the_registry_does_not_answer(clone: Path,
                                                                tmp_path: Path) -> None:
    result = run_image_step(clone, tmp_path / "out", f"127.0.0.1:{free_port()}", "false")
    assert result.returncode == 1
    assert "did not answer" in result.stderr and "kubectl -n kube-system" in result.stderr
    assert not (tmp_path / "out" / "exists").exists()


def test_image_step_outputs_are_the_files_it_writes() -> None:
    outputs = {p["name"]: p["valueFrom"]["path"] for p in IMAGE_STEP["outputs"]["parameters"]}
    assert outputs == {"image": f"{ENV['OUT']}/image", "exists": f"{ENV['OUT']}/exists"}
    (artifact,) = IMAGE_STEP["inputs"]["artifacts"]
    assert artifact["path"] == ENV["SOURCE"] and "git" in artifact


def test_the_tag_covers_every_file_the_dockerfile_copies() -> None:
    """Each COPY source of train/Dockerfile is one of SOURCES or lies under one, and back."""
    text = (REPO / "train" / "Dockerfile").read_text()
    copied = {src.rstrip("/") for line in text.splitlines() if line.startswith("COPY ")
              for src in line.split()[1:-1]}
    covered = {src for src in copied
               if any(src == s or src.startswith(f"{s}/") for s in image_tag.SOURCES)}
    assert copied == covered, f"train/Dockerfile copies {copied - covered}, not in the tag"
    assert {s for s in image_tag.SOURCES
            if not any(c == s or c.startswith(f"{s}/") for c in copied)} <= {"train"}
