"""MLflow helpers for the pipeline: where MLflow is, whether it answers, logging, registering."""

from __future__ import annotations

import urllib.error
import urllib.request
from importlib.metadata import version as installed_version
from pathlib import Path

import mlflow
from config import DEV_ALIAS, EXPERIMENT_NAME, LOCAL_MLRUNS, MODEL_NAME
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from torch import nn


class MlflowUnreachable(Exception):
    """The MLflow tracking server does not answer."""


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, with one clear line, when an HTTP tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return  # a local store needs no server
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status == 200:
                return
            reason = f"HTTP {response.status}"
    except urllib.error.HTTPError as err:
        reason = f"HTTP {err.code} {err.reason}"
    except (urllib.error.URLError, OSError) as err:
        reason = str(getattr(err, "reason", err))
    raise MlflowUnreachable(f"MLflow tracking server at {uri} is unreachable ({reason})")


def use_experiment(uri: str) -> str:
    """Point mlflow at uri and the pipeline's experiment (created if missing); return its id."""
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:"):
        LOCAL_MLRUNS.mkdir(parents=True, exist_ok=True)
        client = MlflowClient(uri)
        if client.get_experiment_by_name(EXPERIMENT_NAME) is None:
            # keep local artifacts next to the database, not in the current directory
            artifacts = (LOCAL_MLRUNS / "artifacts").resolve().as_uri()
            client.create_experiment(EXPERIMENT_NAME, artifact_location=artifacts)
    return mlflow.set_experiment(EXPERIMENT_NAME).experiment_id


def model_requirements() -> list[str]:
    """Pinned packages a logged model needs (given explicitly: inferring them is slow)."""
    names = ("torch", "torchvision", "onnxruntime")
    return [f"{name}=={installed_version(name).split('+')[0]}" for name in names]


def log_model(model: nn.Module, onnx_path: Path) -> ModelInfo:
    """Log model (pickled PyTorch, for fine-tuning) with onnx_path (served) to the active run.

    Both land in one logged model named 'model', so one registered version holds both:
    data/model.pth and extra_files/model.onnx (what `ops.py download` fetches).
    """
    return mlflow.pytorch.log_model(
        model, name="model", serialization_format="pickle",
        pip_requirements=model_requirements(), extra_files=[str(onnx_path)],
    )


def register(model_uri: str, tags: dict[str, str]) -> str:
    """Register model_uri as a new version, point the development alias at it; return it."""
    version = mlflow.register_model(model_uri, MODEL_NAME, tags=tags).version
    MlflowClient().set_registered_model_alias(MODEL_NAME, DEV_ALIAS, version)
    return str(version)
