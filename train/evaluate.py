"""Metrics of a classifier on a labelled split: predictions, accuracy, recall, confusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from app.food11 import CLASS_NAMES, folder_name


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, flip: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Return (true labels, predicted labels) over loader; flip mirrors images left-right."""
    model.eval()
    truth, preds = [], []
    for images, labels in loader:
        if flip:
            images = torch.flip(images, dims=[3])
        preds.append(model(images).argmax(1).numpy())
        truth.append(labels.numpy())
    return np.concatenate(truth), np.concatenate(preds)


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
