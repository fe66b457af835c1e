"""Fixtures of the model evaluation suite: the served model under test, its data, thresholds.

Run against the ONNX file the app will serve (flow.py does this after every training run);
the PyTorch model it was exported from (model.pth beside it, or --torch-model-path) is the
reference the parity test compares it with:

    cd train && python -m pytest --model-path /path/model.onnx --data-dir ../data/food11-sample

The thresholds come from train/config.py, overridable by EVAL_* environment variables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from config import TrainConfig, load_config
from dataset import Food11Folder
from evaluate import OnnxModel, Scores, load_onnx, score, summarize
from model import TORCH_FILE
from torch.utils.data import DataLoader, Subset
from transforms import eval_transform

EVAL_BATCH, EVAL_ORDER_SEED = 64, 0


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options naming the model under test, its data and where to write the metrics."""
    group = parser.getgroup("model evaluation")
    group.addoption("--model-path", default=os.environ.get("MODEL_PATH"),
                    help="model.onnx to evaluate (env MODEL_PATH)")
    group.addoption("--torch-model-path", default=None,
                    help=f"the PyTorch model it was exported from (default: {TORCH_FILE} "
                         "in the same folder)")
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
    """The ONNX file under test."""
    return Path(request.config.getoption("--model-path"))


@pytest.fixture(scope="session")
def torch_model_path(request: pytest.FixtureRequest, model_path: Path) -> Path:
    """The PyTorch model the ONNX file was exported from."""
    given = request.config.getoption("--torch-model-path")
    return Path(given) if given else model_path.with_name(TORCH_FILE)


@pytest.fixture(scope="session")
def model(model_path: Path) -> OnnxModel:
    """The model under test, in ONNX Runtime on one thread, as the app runs it."""
    return load_onnx(model_path)


@pytest.fixture(scope="session")
def input_size(model: OnnxModel) -> int:
    """The input size from the model's metadata (the contract tests check it)."""
    if model.input_size is None:
        pytest.fail(f"the model has no valid input_size metadata: {model.metadata}")
    return model.input_size


@pytest.fixture(scope="session")
def metrics(request: pytest.FixtureRequest) -> Iterator[dict]:
    """Numbers the tests compute; written to --metrics-out when the session ends."""
    values: dict = {}
    yield values
    out = request.config.getoption("--metrics-out")
    if out:
        Path(out).write_text(json.dumps(values, indent=1))


@pytest.fixture(scope="session")
def eval_loader(input_size: int, cfg: TrainConfig) -> DataLoader:
    """The held-out split (subset images per class if > 0), preprocessed as the app does.

    The images come in one fixed shuffled order, the same on every pass (the flip test
    compares passes), so that each batch mixes classes as real traffic does.
    """
    split = Food11Folder(cfg.data_dir / "evaluation", transform=eval_transform(input_size),
                         subset=cfg.subset)
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(EVAL_ORDER_SEED))
    return DataLoader(Subset(split, order.tolist()), batch_size=EVAL_BATCH)


@pytest.fixture(scope="session")
def scores(model: OnnxModel, eval_loader: DataLoader) -> Scores:
    """Every evaluation image and its mirror image, scored once for all the tests."""
    return score(model, eval_loader)


@pytest.fixture(scope="session")
def results(scores: Scores, metrics: dict) -> dict:
    """Accuracy, per-class recall and confusion matrix on the evaluation split."""
    summary = summarize(scores.labels, scores.predictions)
    metrics.update(summary)
    return summary
