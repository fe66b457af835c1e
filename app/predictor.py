"""Load the served ONNX model, check it against the serving contract, and classify images."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from app.food11 import CLASS_NAMES, preprocess

log = logging.getLogger(__name__)

# Keys of the model's ONNX metadata_props (written by train/model.py).
META_CLASS_NAMES, META_INPUT_SIZE = "class_names", "input_size"


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


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from one row of logits, computed in float64."""
    shifted = logits.astype(np.float64) - np.max(logits)
    exp = np.exp(shifted)
    return exp / exp.sum()


class Predictor:
    """A loaded, warmed-up ONNX model plus the app's preprocessing."""

    def __init__(self, model_path: Path, threads: int = 1) -> None:
        self.session = load_session(model_path, threads)
        self.input_size = read_metadata(self.session, model_path)
        self.input_name = self.session.get_inputs()[0].name
        self.warm_up()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The model's logits for a float32 N x 3 x S x S batch."""
        return self.session.run(None, {self.input_name: batch})[0]

    def warm_up(self) -> None:
        """Run one inference on a blank image of the model's declared input size."""
        blank = np.zeros((1, 3, self.input_size, self.input_size), dtype=np.float32)
        try:
            out = self.run(blank)
        except Exception as err:
            raise ModelLoadError(f"warm-up inference failed: {err}") from err
        if tuple(out.shape) != (1, len(CLASS_NAMES)):
            raise ModelLoadError(
                f"warm-up output has shape {tuple(out.shape)}, expected (1, {len(CLASS_NAMES)})"
            )

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB image as the model's 1 x 3 x S x S input."""
        return preprocess(image, self.input_size)[np.newaxis]

    def predict(self, image: Image.Image, k: int = 3) -> Prediction:
        """Classify one RGB image with the serving preprocessing."""
        batch = self.preprocess(image)
        try:
            logits = self.run(batch)
        except Exception as err:
            log.error("model forward pass failed on a %s input: %s", batch.shape, err)
            raise PredictionError(
                f"the model failed on a {batch.shape[-1]}x{batch.shape[-2]} input: {err}"
            ) from err
        if tuple(logits.shape) != (1, len(CLASS_NAMES)):
            raise PredictionError(f"the model returned shape {tuple(logits.shape)}")
        probs = softmax(logits[0])
        best = np.argsort(-probs, kind="stable")[: min(k, len(CLASS_NAMES))]
        return Prediction([(CLASS_NAMES[i], float(probs[i])) for i in best])


def load_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """Open the ONNX model on the CPU with `threads` intra-op threads and one inter-op thread."""
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist (set MODEL_PATH)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types for unparsable files
        raise ModelLoadError(f"{path} is not an ONNX model onnxruntime can load: {err}") from err


def read_metadata(session: ort.InferenceSession, path: Path) -> int:
    """Check the model's class_names and input_size metadata; return the input size."""
    meta = session.get_modelmeta().custom_metadata_map
    missing = [k for k in (META_CLASS_NAMES, META_INPUT_SIZE) if k not in meta]
    if missing:
        raise ModelLoadError(f"{path} lacks the ONNX metadata {missing} (train/model.py "
                             "writes class_names and input_size)")
    try:
        names = json.loads(meta[META_CLASS_NAMES])
    except ValueError:
        names = meta[META_CLASS_NAMES]
    if names != list(CLASS_NAMES):
        raise ModelLoadError(
            f"the model's class_names {names!r} differ from app/food11.CLASS_NAMES {CLASS_NAMES!r}"
        )
    raw = meta[META_INPUT_SIZE]
    if not raw.isdigit() or int(raw) <= 0:
        raise ModelLoadError(f"the model's input_size {raw!r} is not a positive integer")
    return int(raw)
