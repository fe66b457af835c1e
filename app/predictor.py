"""Load the served model, check it against the serving contract, and classify images."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from app.food11 import CLASS_NAMES, IMAGE_SIZE, eval_transform

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model file is missing or breaks the serving contract; the app must not start."""


class PredictionError(RuntimeError):
    """The model failed on a well-formed request: a fault of the model, not the client."""


@dataclass(frozen=True)
class Prediction:
    """The top classes for one image, best first, as (class name, probability) pairs."""

    top: list[tuple[str, float]]

    @property
    def label(self) -> str:
        """The predicted class."""
        return self.top[0][0]

    @property
    def probability(self) -> float:
        """The probability of the predicted class."""
        return self.top[0][1]


def read_version(path: Path) -> str | None:
    """The model version written by the build step, or None if the file is missing or empty."""
    try:
        return path.read_text().strip() or None
    except (FileNotFoundError, IsADirectoryError):
        return None


class Predictor:
    """A loaded, warmed-up model plus the app's preprocessing."""

    def __init__(self, model_path: Path) -> None:
        self.model = load_model(model_path)
        self.input_size = int(self.model.input_size)
        self.transform = eval_transform(IMAGE_SIZE)
        self.warm_up()

    def warm_up(self) -> None:
        """Run one inference on a blank image of the model's declared input size."""
        blank = torch.zeros(1, 3, self.input_size, self.input_size)
        try:
            with torch.inference_mode():
                out = self.model(blank)
        except Exception as err:
            raise ModelLoadError(f"warm-up inference failed: {err}") from err
        if tuple(out.shape) != (1, len(CLASS_NAMES)):
            raise ModelLoadError(
                f"warm-up output has shape {tuple(out.shape)}, expected (1, {len(CLASS_NAMES)})"
            )

    def predict(self, image: Image.Image, k: int = 3) -> Prediction:
        """Classify one RGB image with the serving preprocessing."""
        batch = self.transform(image).unsqueeze(0)
        try:
            with torch.inference_mode():
                logits = self.model(batch)
        except Exception as err:
            log.error("model forward pass failed on a %s input: %s", tuple(batch.shape), err)
            raise PredictionError(
                f"the model failed on a {batch.shape[-1]}x{batch.shape[-2]} input: {err}"
            ) from err
        if tuple(logits.shape) != (1, len(CLASS_NAMES)):
            raise PredictionError(f"the model returned shape {tuple(logits.shape)}")
        probs = torch.softmax(logits[0].float(), dim=0)
        values, indices = torch.topk(probs, k=min(k, len(CLASS_NAMES)))
        pairs = zip(indices.tolist(), values.tolist(), strict=True)
        return Prediction([(CLASS_NAMES[i], p) for i, p in pairs])


def load_model(path: Path) -> torch.nn.Module:
    """Unpickle the whole model on the CPU and check its declared classes and size."""
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist (set MODEL_PATH)")
    try:
        model = torch.load(path, weights_only=False, map_location="cpu")
    except Exception as err:
        raise ModelLoadError(f"cannot load {path}: {err}") from err
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"{path} holds a {type(model).__name__}, not a torch.nn.Module")
    names = getattr(model, "class_names", None)
    if not isinstance(names, (list, tuple)) or list(names) != list(CLASS_NAMES):
        raise ModelLoadError(
            f"the model's class_names {names!r} differ from app/food11.CLASS_NAMES {CLASS_NAMES!r}"
        )
    size = getattr(model, "input_size", None)
    if not isinstance(size, int) or size <= 0:
        raise ModelLoadError(f"the model's input_size {size!r} is not a positive integer")
    return model.eval()
