"""The previous serving design, kept only for the benchmark: PyTorch eager on model.pth.

    gunicorn --config app/gunicorn.conf.py app.eager_reference:app   (MODEL_PATH=model.pth)

The same Flask app, decoding and preprocessing as app.server; only the forward pass runs in
PyTorch, on one thread per worker, as the app did before ONNX Runtime. It needs torch and
torchvision, which the app image does not have (app/.dockerignore leaves this file out).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from app.config import load_config
from app.food11 import CLASS_NAMES, preprocess
from app.predictor import Prediction, softmax
from app.web import create_app


class EagerPredictor:
    """A pickled PyTorch model (train/model.py's model.pth) behind the Predictor interface."""

    def __init__(self, path: str, threads: int = 1) -> None:
        torch.set_num_threads(threads)
        self.model = torch.load(path, weights_only=False, map_location="cpu").eval()
        self.input_size = int(self.model.input_size)

    def predict(self, image: Image.Image, k: int = 3) -> Prediction:
        """Classify one RGB image with the serving preprocessing."""
        batch = torch.from_numpy(preprocess(image, self.input_size)[np.newaxis])
        with torch.inference_mode():
            logits = self.model(batch)[0].numpy()
        probs = softmax(logits)
        best = np.argsort(-probs, kind="stable")[:k]
        return Prediction([(CLASS_NAMES[i], float(probs[i])) for i in best])


_config = load_config()
app = create_app(_config, EagerPredictor(str(_config.model_path), _config.threads))
