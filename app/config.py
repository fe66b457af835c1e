"""The serving app's settings, read from environment variables in one place."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
SAMPLES_DIR = APP_DIR / "samples"


def sample_file(class_name: str, samples_dir: Path = SAMPLES_DIR) -> Path:
    """The bundled sample photo of a class: samples/<folder name>.jpg."""
    from app.food11 import folder_name  # here: gunicorn's master needs no NumPy or Pillow

    return samples_dir / f"{folder_name(class_name)}.jpg"


class ConfigError(ValueError):
    """An environment variable holds a value the app cannot use."""


@dataclass(frozen=True)
class Config:
    """Everything the app and gunicorn read from the environment."""

    model_path: Path = Path("model.onnx")
    versions_file: Path = Path("versions.txt")
    workers: int = 1
    threads: int = 1
    max_upload_mb: float = 8.0
    max_image_pixels: int = 40_000_000
    port: int = 8000
    timeout_s: int = 60

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes (Flask's MAX_CONTENT_LENGTH)."""
        return int(self.max_upload_mb * 1024 * 1024)


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The container's CPU quota in cores (cgroup v2 or v1), or None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def cpu_count() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return cpus


def _number(
    env: Mapping[str, str], name: str, kind: type, default, minimum, maximum=None
) -> int | float:
    """Parse one numeric variable, or raise ConfigError naming it."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={raw!r} must be at most {maximum}")
    return value


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Build the Config from environment variables (os.environ by default)."""
    env = os.environ if env is None else env
    d = Config()  # the defaults, except workers: one per core unless WORKERS says otherwise
    return Config(
        model_path=Path(env.get("MODEL_PATH") or d.model_path),
        versions_file=Path(env.get("VERSIONS_FILE") or d.versions_file),
        workers=_number(env, "WORKERS", int, cpu_count(), 1),
        threads=_number(env, "MODEL_THREADS", int, d.threads, 1),
        max_upload_mb=_number(env, "MAX_UPLOAD_MB", float, d.max_upload_mb, 0.01),
        max_image_pixels=_number(env, "MAX_IMAGE_PIXELS", int, d.max_image_pixels, 1),
        port=_number(env, "PORT", int, d.port, 1, 65535),
        timeout_s=_number(env, "TIMEOUT", int, d.timeout_s, 1),
    )
