"""yamllint over every YAML file of the repository, with the repository's .yamllint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
YAMLLINT = Path(sys.executable).parent / "yamllint"


def yamllint(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run yamllint in strict mode (warnings fail too)."""
    return subprocess.run([YAMLLINT, "-s", *args], cwd=cwd, capture_output=True, text=True)


def test_all_yaml_passes_yamllint() -> None:
    result = yamllint("-c", REPO / ".yamllint", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_relaxes_only_what_it_says() -> None:
    config = yaml.safe_load((REPO / ".yamllint").read_text())
    assert config["extends"] == "default"
    assert config["rules"]["line-length"]["max"] == 120
    ignored = config["ignore"].split()
    for path in ("ansible/k8s/kubespray/", "notebooks/", "_build/", ".venv*/"):
        assert path in ignored


def test_config_still_catches_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "---\nkey: value\nkey: again\nlist: [1,2]\nlong: " + "x" * 121 + "\n"
    )
    result = yamllint("-c", REPO / ".yamllint", "bad.yaml", cwd=tmp_path)
    assert result.returncode != 0
    for rule in ("key-duplicates", "commas", "line-length"):
        assert rule in result.stdout, result.stdout
