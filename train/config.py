"""Training pipeline settings: defaults here, overridden by environment variables, then flags.

Every tunable number of the pipeline lives in `TrainConfig`. Each field can be set by an
environment variable (`ENV_NAMES`) or by the matching `flow.py` flag (`--head-epochs 2`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TRAIN_DIR = Path(__file__).resolve().parent
REPO_ROOT = TRAIN_DIR.parent
# `app/food11.py` is the serving contract; make it importable when a script runs from train/.
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))

from app.food11 import IMAGE_SIZE  # noqa: E402

# Names shared with the rest of the repository (see CONTRIBUTING.md).
MODEL_NAME = "GourmetGramFood11Model"
EXPERIMENT_NAME = "gourmetgram-food11"
DEV_ALIAS = "development"
SCENARIOS: tuple[str, ...] = ("normal", "bad-architecture", "oversized", "slow")
DEFAULT_VERSION_FILE = Path("/tmp/model_version")

# Where MLflow lives when MLFLOW_TRACKING_URI is unset: SQLite + artifacts under the repo.
LOCAL_MLRUNS = Path(os.environ.get("GOURMETGRAM_MLRUNS", REPO_ROOT / "mlruns"))

# Memory limit of one app pod, as in k8s/gourmetgram/values.yaml (a test checks they agree).
# The `oversized` scenario builds a model whose weights alone exceed it.
SERVING_MEMORY_LIMIT = "1Gi"
OVERSIZE_FACTOR = 1.25

# The `slow` scenario inserts this many identity 3x3 convolutions (model.make_slow) after
# MobileNetV2's first block: same predictions, more compute, so that only the canary gate's
# live p95 rule (train/canary.py) refuses it. At 64 px each costs ~0.18 ms in ONNX Runtime on
# one thread on the project's 2-core test machine: the slow model takes ~68 ms a photo, the
# normal one ~1 ms. The Chameleon nodes (2 vCPUs) may be 1.5-2x slower: ~100-140 ms, which
# still passes
# - the offline latency budget (TrainConfig.latency_budget_ms, 250 ms for one image), and
# - the staging load test (app/staging_tests.py: p95 <= 1000 ms at concurrency 4 against one
#   worker on one CPU, so about 4 x 140 ms with the queueing),
# while the canary's p95 is far above production's x 1.25 + 50 ms (Thresholds in canary.py;
# production's p95, decoding included, is a few tens of ms: 22 ms in tests/test_canary_gate.py).
# Many more layers would fail staging; far fewer would hide in the gate's slack. At 224 px
# (data set food11) each layer costs ~12x more (~830 ms a photo) and the slow model fails the
# offline latency budget instead (train/README.md).
SLOW_EXTRA_LAYERS = 384

# Memory peaks of the workflow steps that run Python, measured on the sample set: anonymous
# memory (+ shmem) of the step's whole process tree in its own memory cgroup, as a pod's
# limit counts it (workflows/README.md, "Memory", has the figures and how they were taken).
# Each step's memory limit in workflows/ must be at least its peak (tests/test_workflows.py).
MEMORY_PEAKS: dict[str, str] = {
    # flow.py oversized, during its evaluation: 1224 MiB anonymous + the widened model's
    # 1280 MiB of weights mapped from its file (anonymous peak 1942 MiB, while widening).
    "train": "2504Mi",
    "download": "1773Mi",  # ops.py download of the oversized version
    "ops": "492Mi",  # ops.py current (MLflow and Kubernetes clients)
    "staging-suite": "368Mi",  # python -m app.staging_tests
}

WEIGHT_CHOICES = ("auto", "imagenet", "none")
DEVICE_CHOICES = ("auto", "cuda", "cpu")


class ConfigError(ValueError):
    """A setting holds a value the pipeline cannot use."""

# The data sets a run can train on. Each decides the input size and the starting weights
# (recorded with the model as `input_size` and `pretrained`) and where the data usually is.
DATASETS: dict[str, dict[str, object]] = {
    # Synthetic (sample_data.py): small images, random init is enough (weights auto).
    "sample": {"data_dir": REPO_ROOT / "data" / "food11-sample", "image_size": IMAGE_SIZE,
               "weights": "auto"},
    # Real Food-11 photos (food11_data.py prepares them): MobileNetV2's native 224 px and
    # ImageNet weights, which the Chameleon nodes download.
    "food11": {"data_dir": REPO_ROOT / "data" / "food11", "image_size": 224,
               "weights": "imagenet"},
}
# Training schedule and evaluation gate per (data set, "subset" or "full"): subset > 0 is the
# CPU path (a few images per class, mostly the head learns), 0 the whole set (the H100).
# Empty: TrainConfig's own defaults. train/README.md gives the reasoning behind each gate.
SCHEDULES: dict[tuple[str, str], dict[str, object]] = {
    ("sample", "subset"): {},
    ("sample", "full"): {},
    ("food11", "subset"): {"head_epochs": 3, "finetune_epochs": 1, "finetune_lr": 1e-4,
                           "finetune_blocks": 5, "cache_features": 1,
                           "min_accuracy": 0.55, "min_class_recall": 0.15,
                           "min_flip_agreement": 0.75},
    ("food11", "full"): {"batch_size": 64, "head_epochs": 2, "finetune_epochs": 6,
                         "cache_features": 1,
                         "finetune_lr": 1e-4, "min_accuracy": 0.75, "min_class_recall": 0.4,
                         "min_flip_agreement": 0.85},
}


def dataset_defaults(dataset: str, subset: int) -> dict[str, object]:
    """The settings a data set implies, for a subset run (subset > 0) or the full set."""
    if dataset not in DATASETS:
        raise ConfigError(f"dataset must be one of {tuple(DATASETS)}, got {dataset!r}")
    return {**DATASETS[dataset], **SCHEDULES[dataset, "subset" if subset > 0 else "full"]}


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else the local SQLite store under mlruns/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{LOCAL_MLRUNS / 'mlflow.db'}"


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one pipeline run: data, training schedule and evaluation thresholds."""

    dataset: str = "sample"  # sample (synthetic) or food11; sets the defaults in DATASETS
    subset: int = 0  # images per class and split to use; 0: all of them
    data_dir: Path = REPO_ROOT / "data" / "food11-sample"
    version_file: Path = DEFAULT_VERSION_FILE
    # Training. Sample-set defaults: 64 px, random init, ~20 s on two CPU cores.
    image_size: int = IMAGE_SIZE
    weights: str = "auto"  # auto: ImageNet weights if they download, else random init
    batch_size: int = 16
    head_epochs: int = 1  # stage 1: only the new classifier head learns
    finetune_epochs: int = 9  # stage 2: the whole network learns (or its top: finetune_blocks)
    # 0: fine-tuning trains every block of the backbone; N: only its last N blocks (of 19)
    # and the head, the first ones stay as they are (train/README.md, "Fine-tuning the top").
    finetune_blocks: int = 0
    head_lr: float = 1e-3
    finetune_lr: float = 1e-3
    num_workers: int = -1  # -1: 0 on a CPU, 4 when a GPU is present
    device: str = "auto"  # auto: the GPU if torch sees one; cuda: fail without one (gpu=true)
    # 1: what does not learn is computed once per image: the frozen backbone's features for
    # the head epochs, and the frozen blocks' output for the fine-tune epochs (finetune_blocks);
    # 0: the backbone computes them again in every epoch (the benchmark's comparison). The
    # food11 schedules set 1; the sample set keeps 0: it learns from random weights, the whole
    # network for 9 epochs after one head epoch of 2 s, and a cache would only change where
    # those 9 epochs start.
    cache_features: int = 0
    seed: int = 0
    # Evaluation (the pytest suite in train/tests/ reads these).
    min_accuracy: float = 0.75
    min_class_recall: float = 0.4
    min_flip_agreement: float = 0.75
    latency_budget_ms: float = 250.0  # one image, ONNX Runtime, one thread
    max_logit_diff: float = 1e-3  # ONNX against PyTorch, largest absolute logit difference
    max_model_bytes: int = 2 * 1024**3  # registry storage budget, not the serving limit


# The environment variable behind each field.
ENV_NAMES: dict[str, str] = {
    f.name: ("EVAL_" if f.name.startswith(("min_", "max_", "latency_")) else "TRAIN_")
    + f.name.upper()
    for f in dataclasses.fields(TrainConfig)
}
ENV_NAMES["data_dir"] = "FOOD11_DATA_DIR"
ENV_NAMES["version_file"] = "MODEL_VERSION_FILE"


def _convert(name: str, raw: str) -> object:
    """Turn the text of one setting into the field's type, or raise ConfigError."""
    default = {f.name: f.default for f in dataclasses.fields(TrainConfig)}[name]
    try:
        return type(default)(raw)
    except ValueError:
        kind = type(default).__name__
        raise ConfigError(f"{name} must be a {kind}, got {raw!r}") from None


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check ranges and choices; return the config unchanged or raise ConfigError."""
    for name in ("image_size", "batch_size", "max_model_bytes"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"dataset must be one of {tuple(DATASETS)}, got {cfg.dataset!r}")
    for name in ("head_epochs", "finetune_epochs", "finetune_blocks", "subset"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must not be negative, got {getattr(cfg, name)}")
    if cfg.head_epochs + cfg.finetune_epochs < 1:
        raise ConfigError("head_epochs + finetune_epochs must be at least 1")
    for name in ("min_accuracy", "min_class_recall", "min_flip_agreement"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1, got {getattr(cfg, name)}")
    if cfg.head_lr <= 0 or cfg.finetune_lr <= 0 or cfg.latency_budget_ms <= 0:
        raise ConfigError("learning rates and the latency budget must be positive")
    if not cfg.max_logit_diff > 0:
        raise ConfigError(f"max_logit_diff must be positive, got {cfg.max_logit_diff}")
    if cfg.weights not in WEIGHT_CHOICES:
        raise ConfigError(f"weights must be one of {WEIGHT_CHOICES}, got {cfg.weights!r}")
    if cfg.cache_features not in (0, 1):
        raise ConfigError(f"cache_features must be 0 or 1, got {cfg.cache_features}")
    if cfg.device not in DEVICE_CHOICES:
        raise ConfigError(f"device must be one of {DEVICE_CHOICES}, got {cfg.device!r}")
    return cfg


def load_config(
    flags: Mapping[str, str | None] | None = None, env: Mapping[str, str] | None = None
) -> TrainConfig:
    """Build the config: defaults (of the data set), then environment variables, then flags."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name, var in ENV_NAMES.items():
        if env.get(var, "") != "":
            values[name] = _convert(name, env[var])
    for name, raw in (flags or {}).items():
        if name not in ENV_NAMES:
            raise ConfigError(f"unknown setting {name!r}")
        if raw is not None:
            values[name] = _convert(name, raw)
    dataset = str(values.get("dataset", TrainConfig.dataset))
    implied = dataset_defaults(dataset, int(values.get("subset", TrainConfig.subset)))
    return validate(TrainConfig(**{**implied, **values}))


def version_file_setting(flag: str | None, env: Mapping[str, str] | None = None) -> Path:
    """The version file named by the flag, else MODEL_VERSION_FILE, else the default."""
    env = os.environ if env is None else env
    return Path(flag or env.get(ENV_NAMES["version_file"]) or DEFAULT_VERSION_FILE)


def eval_env(cfg: TrainConfig) -> dict[str, str]:
    """The environment variables that hand cfg's thresholds, data set and subset to pytest."""
    return {
        ENV_NAMES[f.name]: str(getattr(cfg, f.name))
        for f in dataclasses.fields(cfg)
        if ENV_NAMES[f.name].startswith("EVAL_") or f.name in ("dataset", "subset")
    }


_UNITS = {
    "": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
}


def parse_quantity(text: str) -> int:
    """Convert a Kubernetes memory quantity such as '1Gi' or '512M' to bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kMGT]i?|)\s*", text)
    if not match:
        raise ConfigError(f"not a Kubernetes memory quantity: {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])
