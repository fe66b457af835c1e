"""The app's settings: environment parsing, CPU detection and the gunicorn configuration."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest

from app.config import APP_DIR, ConfigError, cgroup_cpu_limit, cpu_count, load_config


def test_defaults() -> None:
    config = load_config({})
    assert config.model_path == Path("model.onnx")
    assert config.versions_file == Path("versions.txt")
    assert config.workers == cpu_count() >= 1
    assert config.threads == 1
    assert config.port == 8000
    assert config.max_upload_bytes == 8 * 1024 * 1024


def test_environment_overrides() -> None:
    config = load_config({"MODEL_PATH": "/m/model.onnx", "VERSIONS_FILE": "/m/v.txt",
                          "WORKERS": "3", "MODEL_THREADS": "2", "MAX_UPLOAD_MB": "0.5",
                          "MAX_IMAGE_PIXELS": "1000", "PORT": "9000", "TIMEOUT": "90"})
    assert (config.model_path, config.versions_file) == (Path("/m/model.onnx"), Path("/m/v.txt"))
    assert (config.workers, config.threads, config.port) == (3, 2, 9000)
    assert config.max_upload_bytes == 512 * 1024 and config.max_image_pixels == 1000
    assert config.timeout_s == 90


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [("WORKERS", "two", "not a valid int"), ("WORKERS", "0", "at least 1"),
     ("MODEL_THREADS", "1.5", "not a valid int"), ("MAX_UPLOAD_MB", "nan", "at least"),
     ("PORT", "70000", "at most 65535"), ("MAX_IMAGE_PIXELS", "-5", "at least 1")],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"{name}=.*{message}"):
        load_config({name: value})


@pytest.mark.parametrize(
    ("files", "cores"),
    [({"cpu.max": "max 100000\n"}, None),
     ({"cpu.max": "150000 100000\n"}, 1.5),
     ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
     ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
     ({}, None)],
    ids=["v2-unlimited", "v2-limited", "v1-limited", "v1-unlimited", "no-cgroup"],
)
def test_cgroup_cpu_limit(tmp_path: Path, files: dict[str, str], cores: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_limit(tmp_path) == cores


def test_gunicorn_config_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKERS", "3")
    monkeypatch.setenv("PORT", "9123")
    # Empty means "unset" to gunicorn.conf.py; unlike delenv of an absent variable, setenv
    # makes monkeypatch remove the folder the config exports once the test ends.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    settings = runpy.run_path(str(APP_DIR / "gunicorn.conf.py"))
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    try:
        assert settings["workers"] == 3 and settings["bind"] == "0.0.0.0:9123"
        assert settings["worker_class"] == "sync" and settings["timeout"] >= 30
        assert metrics_dir.is_dir()
        assert "post_fork" not in settings  # threads are set per ONNX Runtime session
    finally:
        settings["on_exit"](None)
    assert not metrics_dir.exists()
