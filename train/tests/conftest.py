"""Fixtures of the model evaluation suite: the model under test, its data and thresholds.

Run against one saved model (flow.py does this after every training run):

    cd train && python -m pytest --model-path /path/model.pth --data-dir ../data/food11-sample

The thresholds come from train/config.py, overridable by EVAL_* environment variables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from config import TrainConfig, load_config
from dataset import make_loader
from evaluate import predict, summarize
from model import load_for_serving
from torch import nn
from torch.utils.data import DataLoader

from app.food11 import eval_transform


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options naming the model under test, its data and where to write the metrics."""
    group = parser.getgroup("model evaluation")
    group.addoption("--model-path", default=os.environ.get("MODEL_PATH"),
                    help="model.pth to evaluate (env MODEL_PATH)")
    group.addoption("--data-dir", default=None,
                    help="dataset root with evaluation/ (env FOOD11_DATA_DIR)")
    group.addoption("--metrics-out", default=None,
                    help="write the computed metrics to this JSON file")


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to start without a model to evaluate."""
    if not config.getoption("--model-path"):
        raise pytest.UsageError("give the model to evaluate: --model-path PATH or MODEL_PATH")


@pytest.fixture(scope="session")
def cfg(request: pytest.FixtureRequest) -> TrainConfig:
    """Thresholds and data location."""
    return load_config({"data_dir": request.config.getoption("--data-dir")})


@pytest.fixture(scope="session")
def model_path(request: pytest.FixtureRequest) -> Path:
    """The saved model file under test."""
    return Path(request.config.getoption("--model-path"))


@pytest.fixture(scope="session")
def model(model_path: Path) -> nn.Module:
    """The model under test, loaded the way the app loads it."""
    return load_for_serving(model_path)


@pytest.fixture(scope="session")
def metrics(request: pytest.FixtureRequest) -> Iterator[dict]:
    """Numbers the tests compute; written to --metrics-out when the session ends."""
    values: dict = {}
    yield values
    out = request.config.getoption("--metrics-out")
    if out:
        Path(out).write_text(json.dumps(values, indent=1))


@pytest.fixture(scope="session")
def eval_loader(model: nn.Module, cfg: TrainConfig) -> DataLoader:
    """The held-out evaluation split, preprocessed at the model's own input size."""
    return make_loader(cfg.data_dir, "evaluation", eval_transform(model.input_size), 64,
                       subset=cfg.subset)


@pytest.fixture(scope="session")
def results(model: nn.Module, eval_loader: DataLoader, metrics: dict) -> dict:
    """Accuracy, per-class recall and confusion matrix on the evaluation split."""
    truth, preds = predict(model, eval_loader)
    summary = summarize(truth, preds)
    summary["predictions"] = preds.tolist()
    metrics.update({k: v for k, v in summary.items() if k != "predictions"})
    return summary
