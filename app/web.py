"""The Flask app: the upload page, the prediction API, health, version and metrics."""

from __future__ import annotations

import io
import logging
import time
from typing import IO

from flask import Flask, Request, Response, g, jsonify, render_template, request
from PIL import Image
from werkzeug.exceptions import HTTPException

from app import metrics
from app.config import Config, sample_file
from app.food11 import CLASS_NAMES
from app.images import BadImage, decode_image
from app.predictor import Prediction, PredictionError, Predictor, read_version

log = logging.getLogger(__name__)


class InMemoryRequest(Request):
    """A request whose uploads stay in memory (Werkzeug spools large ones to disk)."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        """Buffer each upload in memory; MAX_CONTENT_LENGTH bounds its size."""
        return io.BytesIO()


def prediction_json(prediction: Prediction, version: str | None) -> dict:
    """The JSON body of a prediction."""
    return {
        "prediction": prediction.label,
        "probability": prediction.probability,
        "top": [{"class": name, "probability": p} for name, p in prediction.top],
        "model_version": version,
    }


def error(message: str, status: int) -> tuple[Response, int]:
    """A JSON error body with its status code."""
    return jsonify({"error": message}), status


def create_app(config: Config, predictor: Predictor | None = None) -> Flask:
    """Load and warm up the model, then build the app; raises ModelLoadError if it cannot.

    predictor replaces the ONNX one (the benchmark's PyTorch reference passes its own).
    """
    predictor = predictor or Predictor(config.model_path, config.threads)
    version = read_version(config.versions_file)
    sample = sample_file(CLASS_NAMES[0])
    sample_bytes = sample.read_bytes() if sample.is_file() else None
    metrics.MODEL_INFO.labels(model_version=version or "unknown").set(1)
    metrics.start_class_counts(CLASS_NAMES)  # the model's classes (Predictor checks them)
    log.info("model %s loaded from %s and warmed up", version or "(no version)", config.model_path)

    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes
    app.json.sort_keys = False

    def decode(data: bytes) -> Image.Image:
        """Decode an upload, at a reduced JPEG scale when the model's input is much smaller."""
        return decode_image(data, config.max_image_pixels, predictor.input_size)

    def classify(image: Image.Image) -> Response:
        """Predict one decoded image, count the class, and answer with JSON."""
        prediction = predictor.predict(image)
        metrics.PREDICTIONS.labels(food_class=prediction.label).inc()
        return jsonify(prediction_json(prediction, version))

    @app.get("/")
    def index() -> str:
        return render_template("index.html", version=version, classes=CLASS_NAMES)

    @app.post("/predict")
    def predict() -> Response:
        upload = request.files.get("file")
        if upload is None:
            raise BadImage("send the photo as the multipart form field 'file'")
        return classify(decode(upload.read()))

    @app.get("/test")
    def test() -> Response | tuple[Response, int]:
        if sample_bytes is None:
            return error(f"no bundled sample image {sample.name} in app/samples", 404)
        return classify(decode(sample_bytes))

    @app.get("/version")
    def version_() -> Response | tuple[Response, int]:
        if version is None:
            return error(f"{config.versions_file} not found", 404)
        return jsonify({"model_version": version})

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        # create_app returns only after the model loaded and its warm-up inference ran.
        return jsonify({"status": "ready", "model_version": version})

    @app.get("/metrics")
    def metrics_() -> Response:
        return Response(metrics.render(), mimetype=metrics.CONTENT_TYPE)

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def record(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        if "started" in g:
            metrics.LATENCY.labels(endpoint).observe(time.perf_counter() - g.started)
        return response

    @app.errorhandler(BadImage)
    def bad_image(err: BadImage) -> tuple[Response, int]:
        return error(str(err), err.status)

    @app.errorhandler(PredictionError)
    def model_failed(err: PredictionError) -> tuple[Response, int]:
        return error(f"the model could not classify this image: {err}", 500)

    @app.errorhandler(413)
    def too_large(err: HTTPException) -> tuple[Response, int]:
        return error(f"the upload is larger than the {config.max_upload_mb:g} MB limit", 413)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> tuple[Response, int]:
        return error(err.description or err.name, err.code or 500)

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> tuple[Response, int]:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error(f"internal error: {type(err).__name__}", 500)

    return app
