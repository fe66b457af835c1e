"""The served model in ONNX Runtime, and its metrics on a labelled split."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from model import META_CLASS_NAMES, META_INPUT_SIZE
from torch.utils.data import DataLoader

from app.food11 import CLASS_NAMES, folder_name

Logits = Callable[[np.ndarray], np.ndarray]


@dataclass
class OnnxModel:
    """An ONNX Runtime session on one thread (as in the app) and the model's metadata."""

    session: ort.InferenceSession
    metadata: dict[str, str]

    @property
    def class_names(self) -> list[str] | None:
        """The class_names metadata as a list, or None if it is missing or not JSON."""
        try:
            names = json.loads(self.metadata[META_CLASS_NAMES])
        except (KeyError, ValueError):
            return None
        return names if isinstance(names, list) else None

    @property
    def input_size(self) -> int | None:
        """The input_size metadata as an integer, or None if it is missing or malformed."""
        raw = self.metadata.get(META_INPUT_SIZE, "")
        return int(raw) if raw.isdigit() else None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Logits for a float32 N x 3 x S x S batch."""
        name = self.session.get_inputs()[0].name
        return self.session.run(None, {name: np.ascontiguousarray(images, np.float32)})[0]


def load_onnx(path: Path) -> OnnxModel:
    """Open an ONNX model the way the app does: one intra-op and one inter-op thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return OnnxModel(session, dict(session.get_modelmeta().custom_metadata_map))


@dataclass
class Scores:
    """The model's logits for every image of a split and for its mirror image, in order."""

    labels: np.ndarray  # N true class indices
    logits: np.ndarray  # N x classes
    flipped: np.ndarray  # N x classes, of the left-right mirrored images

    @property
    def predictions(self) -> np.ndarray:
        """The predicted class of each image."""
        return self.logits.argmax(1)

    @property
    def flip_agreement(self) -> float:
        """Share of images whose mirror image gets the same predicted class."""
        return float(np.mean(self.flipped.argmax(1) == self.predictions))


def score(model: Logits, loader: DataLoader) -> Scores:
    """One pass over loader: the logits of each image and of its mirror image."""
    labels, logits, flipped = [], [], []
    for images, batch_labels in loader:
        batch = images.numpy()
        logits.append(model(batch))
        flipped.append(model(batch[..., ::-1]))
        labels.append(batch_labels.numpy())
    return Scores(np.concatenate(labels), np.concatenate(logits), np.concatenate(flipped))


def confusion(truth: np.ndarray, preds: np.ndarray, classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Confusion matrix: row = true class, column = predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth, preds), 1)
    return matrix


def summarize(truth: np.ndarray, preds: np.ndarray) -> dict:
    """Accuracy, per-class recall (keyed by folder-style class name) and the confusion matrix."""
    matrix = confusion(truth, preds)
    support = matrix.sum(axis=1)
    recall = np.divide(np.diag(matrix), support, out=np.zeros(len(support)), where=support > 0)
    return {
        "accuracy": float((truth == preds).mean()),
        "recall": {folder_name(n): float(r) for n, r in zip(CLASS_NAMES, recall, strict=True)},
        "confusion": matrix.tolist(),
    }


def plot_confusion(matrix: list[list[int]], path: Path) -> Path:
    """Draw the confusion matrix as a PNG at path (matplotlib's Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(data, cmap="Blues")
    ticks = range(len(CLASS_NAMES))
    ax.set_xticks(ticks, CLASS_NAMES, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(ticks, CLASS_NAMES, fontsize=8)
    for (i, j), value in np.ndenumerate(data):
        if value:
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                    color="white" if value > data.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix on the evaluation split")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
