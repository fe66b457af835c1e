"""Linters over the whole repository: Python, shell, GitHub Actions, Dockerfiles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*cmd: str | Path) -> subprocess.CompletedProcess:
    """Run a linter from the venv in the repository root."""
    return subprocess.run([str(c) for c in cmd], cwd=REPO, capture_output=True, text=True)


def tracked(*patterns: str) -> list[str]:
    """Files git tracks or would track (untracked but not ignored) matching the patterns."""
    out = run("git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *patterns)
    return [f for f in out.stdout.split() if (REPO / f).is_file()]


def test_ruff_is_clean() -> None:
    result = run(BIN / "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_github_workflows_pass_actionlint() -> None:
    workflows = tracked(".github/workflows/*.yml")
    assert {Path(w).name for w in workflows} >= {"ci.yml", "notebooks-kind.yml", "pages.yml"}
    # actionlint also runs shellcheck on every `run:` block when shellcheck is on PATH.
    result = run(BIN / "actionlint", "-shellcheck", BIN / "shellcheck", *workflows)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = tracked("*.sh", ".ci/run")
    assert ".ci/run" in scripts
    result = run(BIN / "shellcheck", *scripts)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", ["train/Dockerfile", "app/Dockerfile"])
def test_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    assert (REPO / dockerfile).exists(), dockerfile
    result = run(BIN / "hadolint", dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr
