"""Unit tests of every endpoint of the serving app, with a freshly trained sample model."""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from flask.testing import FlaskClient
from model import TORCH_FILE, load_torch_model
from PIL import Image
from torchvision import transforms as tv
from transforms import eval_transform, train_transform

from app import metrics
from app.config import Config, sample_file
from app.food11 import CLASS_NAMES, IMAGE_SIZE, MEAN, STD, preprocess
from app.images import decode_image
from app.predictor import ModelLoadError, Predictor
from app.web import create_app

REPO = Path(__file__).resolve().parent.parent
VERSION = "42"
# Largest difference, in normalised input units (one 8-bit step is about 0.017), between a
# large JPEG decoded at reduced scale and decoded in full, after preprocessing (see README).
DRAFT_MAX_DIFF, DRAFT_MEAN_DIFF = 0.06, 0.008


@pytest.fixture(scope="module")
def config(trained_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Config:
    """Serve the trained normal model with a versions.txt of our own."""
    versions = tmp_path_factory.mktemp("serve") / "versions.txt"
    versions.write_text(f"{VERSION}\n")
    return Config(model_path=trained_models["normal"], versions_file=versions)


@pytest.fixture(scope="module")
def client(config: Config) -> FlaskClient:
    """A test client of the app serving the normal model."""
    return create_app(config).test_client()


def sample_bytes(class_name: str) -> bytes:
    """The bundled sample photo of a class."""
    return sample_file(class_name).read_bytes()


def post(client: FlaskClient, data: bytes, filename: str = "photo.jpg", field: str = "file"):
    """POST bytes to /predict as a multipart file field."""
    return client.post("/predict", data={field: (io.BytesIO(data), filename)},
                       content_type="multipart/form-data")


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    """Encode a PIL image in memory."""
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == want:
            return float(match.group(2))
    return 0.0


def test_index_page_offers_an_accessible_upload_form(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<html lang="en">' in html
    assert re.search(r'<label for="file">', html) and 'id="file" name="file" type="file"' in html
    assert 'aria-live="polite"' in html and VERSION in html
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
    assert len(assets) >= 2  # the stylesheet and the script
    for asset in assets:
        with client.get(asset) as reply:
            assert reply.status_code == 200 and reply.data, asset
    assert all(name in html for name in CLASS_NAMES)


def test_predict_returns_a_known_class_for_every_sample(client: FlaskClient) -> None:
    correct = 0
    for name in CLASS_NAMES:
        reply = post(client, sample_bytes(name))
        assert reply.status_code == 200, reply.json
        body = reply.json
        assert body["prediction"] in CLASS_NAMES
        assert 0.0 <= body["probability"] <= 1.0
        assert body["model_version"] == VERSION
        probs = [t["probability"] for t in body["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert body["top"][0] == {"class": body["prediction"], "probability": body["probability"]}
        correct += body["prediction"] == name
    # The model was trained on images like these: far above chance (1 in 11) unless the
    # app's preprocessing differs from training.
    assert correct >= 5, f"only {correct}/11 samples classified correctly"


def test_predict_matches_the_pytorch_model_on_the_training_preprocessing(
    client: FlaskClient, config: Config
) -> None:
    data = sample_bytes("Soup")
    model = load_torch_model(config.model_path.with_name(TORCH_FILE))
    with torch.inference_mode():
        batch = eval_transform(IMAGE_SIZE)(Image.open(io.BytesIO(data)).convert("RGB"))
        expected = torch.softmax(model(batch.unsqueeze(0))[0], 0)
    body = post(client, data).json
    assert body["prediction"] == CLASS_NAMES[int(expected.argmax())]
    assert body["probability"] == pytest.approx(float(expected.max()), abs=1e-5)


@pytest.mark.parametrize("size", [64, 224])
def test_training_and_serving_make_the_same_tensor(config: Config, size: int) -> None:
    image = decode_image(sample_bytes("Rice"), 10**6)
    served = Predictor(config.model_path).preprocess(image)[0] if size == IMAGE_SIZE else \
        preprocess(image, size)
    trained = eval_transform(size)(image)
    assert trained.dtype == torch.float32 and served.dtype == np.float32
    assert np.array_equal(trained.numpy(), served)
    # ...and both equal torchvision's own pipeline, which the project used before.
    reference = tv.Compose([tv.Resize((size, size)), tv.ToTensor(), tv.Normalize(MEAN, STD)])
    assert torch.allclose(reference(image), trained, atol=1e-6)


def test_training_transform_ends_in_the_same_normalisation() -> None:
    image = decode_image(sample_bytes("Egg"), 10**6).resize((48, 48))
    augment = train_transform(48)
    last = augment.transforms[-1]
    assert augment(image).shape == (3, 48, 48)
    expected = tv.Normalize(MEAN, STD)(tv.ToTensor()(image))
    assert torch.allclose(last(image), expected, atol=1e-6)


def large_photo(width: int = 2048, height: int = 1536) -> bytes:
    """A photo-sized JPEG: a sample photo enlarged, with fine-grained texture added."""
    base = Image.open(io.BytesIO(sample_bytes("Noodles/Pasta"))).convert("RGB")
    big = np.asarray(base.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    noise = np.random.default_rng(1).integers(-20, 21, big.shape, dtype=np.int16)
    return encode(Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8)), "JPEG")


@pytest.mark.parametrize("size", [64, 224])
def test_large_jpegs_decode_at_reduced_scale_with_the_same_result(size: int) -> None:
    data = large_photo()
    full = decode_image(data, 10**8)
    reduced = decode_image(data, 10**8, min_side=size)
    assert full.size == (2048, 1536)
    assert min(reduced.size) >= 2 * size and reduced.size[0] < full.size[0]  # it did reduce
    diff = np.abs(preprocess(full, size) - preprocess(reduced, size))
    assert diff.max() <= DRAFT_MAX_DIFF and diff.mean() <= DRAFT_MEAN_DIFF, (
        size, reduced.size, float(diff.max()), float(diff.mean()))


def test_reduced_decoding_leaves_small_and_non_jpeg_images_alone() -> None:
    small = sample_bytes("Rice")  # 96 x 96: already below twice a 64 px input
    assert decode_image(small, 10**6, min_side=64).size == decode_image(small, 10**6).size
    png = encode(Image.open(io.BytesIO(large_photo())))
    assert decode_image(png, 10**8, min_side=64).size == (2048, 1536)


def test_the_model_runs_on_one_intra_op_and_one_inter_op_thread(config: Config) -> None:
    options = Predictor(config.model_path).session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert Predictor(config.model_path, threads=2).session.get_session_options() \
        .intra_op_num_threads == 2


def test_test_endpoint_predicts_the_bundled_sample(client: FlaskClient) -> None:
    reply = client.get("/test")
    assert reply.status_code == 200
    assert reply.json["prediction"] in CLASS_NAMES
    assert reply.json == post(client, sample_bytes(CLASS_NAMES[0])).json


def test_version_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/version").json == {"model_version": VERSION}
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "ready"


def test_version_is_404_json_without_versions_file(config: Config, tmp_path: Path) -> None:
    app = create_app(Config(model_path=config.model_path, versions_file=tmp_path / "none.txt"))
    reply = app.test_client().get("/version")
    assert reply.status_code == 404
    assert "none.txt" in reply.json["error"]


def test_metrics_count_requests_latency_classes_and_version(client: FlaskClient) -> None:
    before = client.get("/metrics").get_data(as_text=True)
    predicted = post(client, sample_bytes("Rice")).json["prediction"]
    post(client, b"not an image")
    reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.mimetype == "text/plain"
    after = reply.get_data(as_text=True)

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    requests = "gourmetgram_http_requests_total"
    assert delta(requests, endpoint="/predict", method="POST", status="200") == 1
    assert delta(requests, endpoint="/predict", method="POST", status="400") == 1
    assert delta("gourmetgram_predictions_total", food_class=predicted) == 1
    latency = "gourmetgram_http_request_duration_seconds_count"
    assert delta(latency, endpoint="/predict") == 2
    assert metric_value(after, "gourmetgram_model_info", model_version=VERSION) == 1


def test_metrics_list_every_class_at_zero_before_any_prediction(config: Config) -> None:
    """Each class's series exists from the start, so increase() counts its first prediction."""
    metrics.PREDICTIONS.clear()  # forget the series other tests' predictions created
    text = create_app(config).test_client().get("/metrics").get_data(as_text=True)
    listed = dict(re.findall(r'^gourmetgram_predictions_total\{food_class="([^"]+)"\} (\S+)$',
                             text, flags=re.MULTILINE))
    assert listed == {name: "0.0" for name in CLASS_NAMES}


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (b"", "file", "empty"),
        (b"GIF89a this is not really an image", "file", "not an image"),
        (b"%PDF-1.7 a document", "file", "not an image"),
        (None, "picture", "'file'"),
    ],
    ids=["empty", "fake-gif", "pdf", "missing-field"],
)
def test_bad_uploads_get_a_clear_400(client: FlaskClient, data, field, message) -> None:
    reply = post(client, data if data is not None else b"x", field=field)
    assert reply.status_code == 400
    assert message in reply.json["error"]


def test_truncated_and_corrupt_images_get_400(client: FlaskClient) -> None:
    jpeg = sample_bytes("Egg")
    corrupt = bytearray(jpeg)
    corrupt[len(jpeg) // 3: len(jpeg) // 3 + 200] = bytes(200)
    for data in (jpeg[: len(jpeg) // 2], jpeg[:20], bytes(corrupt)[:-300]):
        reply = post(client, data)
        assert reply.status_code == 400, reply.json
        assert "error" in reply.json


def test_non_multipart_body_gets_400(client: FlaskClient) -> None:
    reply = client.post("/predict", data=sample_bytes("Egg"), content_type="image/jpeg")
    assert reply.status_code == 400 and "'file'" in reply.json["error"]


def test_routing_errors_are_json(client: FlaskClient) -> None:
    wrong_method = client.get("/predict")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json
    assert client.put("/version").status_code == 405
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and missing.is_json


def test_upload_over_the_limit_gets_413(config: Config) -> None:
    small = Config(model_path=config.model_path, versions_file=config.versions_file,
                   max_upload_mb=0.05)
    client = create_app(small).test_client()
    reply = post(client, bytes(100_000))
    assert reply.status_code == 413
    assert "0.05 MB" in reply.json["error"]
    assert post(client, sample_bytes("Egg")).status_code == 200  # still serving


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height RGB pixels, followed by a little data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes(4096))
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


@pytest.mark.parametrize("side", [7_000, 30_000, 2**31 - 1])
def test_decompression_bombs_are_refused_before_decoding(client: FlaskClient, side: int) -> None:
    # 7000^2 trips the app's own limit (40 M pixels), larger ones Pillow's guard first;
    # a 413 (not a 400 for the missing pixel data) shows the check ran before decoding.
    reply = post(client, png_claiming(side, side))
    assert reply.status_code == 413
    assert "too many pixels" in reply.json["error"]


def test_a_real_bomb_is_refused_without_decoding(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = encode(Image.new("1", (8_000, 8_000)))  # 64 M pixels in about 8 kB
    assert len(bomb) < 100_000

    def never(self: Image.Image) -> None:
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(Image.Image, "load", never)
    assert post(client, bomb).status_code == 413


def test_a_thin_image_is_classified_in_bounded_memory(client: FlaskClient) -> None:
    # 1 x 1,000,000 pixels is far below the pixel limit, but resizing its short side to the
    # model's size first would need 16 GB. Run the preprocessing with 3 GB of memory at most.
    script = (
        "import resource; resource.setrlimit(resource.RLIMIT_DATA, (3 << 30, 3 << 30))\n"
        "from PIL import Image\n"
        "from app.food11 import preprocess\n"
        "array = preprocess(Image.new('RGB', (1, 1_000_000)), 224)\n"
        "assert array.shape == (3, 224, 224), array.shape\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    reply = post(client, encode(Image.new("RGB", (20_000, 1), "orange")))
    assert reply.status_code == 200 and reply.json["prediction"] in CLASS_NAMES


def test_pixel_limit_comes_from_config(config: Config) -> None:
    strict = Config(model_path=config.model_path, versions_file=config.versions_file,
                    max_image_pixels=100 * 100)
    client = create_app(strict).test_client()
    too_big = post(client, encode(Image.new("RGB", (101, 100))))
    assert too_big.status_code == 413 and "101x100" in too_big.json["error"]
    assert post(client, encode(Image.new("RGB", (100, 100)))).status_code == 200


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "CMYK", "I;16", "I", "F"])
def test_odd_image_modes_are_classified(client: FlaskClient, mode: str) -> None:
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    image = Image.open(io.BytesIO(sample_bytes("Meat"))).convert("L").convert(mode)
    reply = post(client, encode(image, fmt))
    assert reply.status_code == 200, reply.json
    assert reply.json["prediction"] in CLASS_NAMES


def test_sixteen_bit_images_are_rescaled_not_clipped() -> None:
    ramp = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257).astype(np.uint16)
    image = decode_image(encode(Image.fromarray(ramp)), 10_000)
    assert image.mode == "RGB"
    assert np.array_equal(np.asarray(image)[..., 0], ramp // 257)


def test_uploads_stay_in_memory(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_disk(*args, **kwargs):
        raise AssertionError("a request wrote a temporary file")

    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    big = encode(Image.fromarray(noise))  # ~1.5 MB: Werkzeug would spool it to disk
    assert len(big) > 1_000_000
    assert post(client, big).status_code == 200


def _save_variant(model_path: Path, out: Path, drop: tuple[str, ...] = (), **metadata) -> Path:
    """Copy a served ONNX model with some metadata changed or dropped."""
    proto = onnx.load(str(model_path))
    props = {p.key: p.value for p in proto.metadata_props if p.key not in drop} | metadata
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=str(value))
    onnx.save(proto, str(out))
    return out


@pytest.mark.parametrize(
    ("metadata", "drop", "message"),
    [
        ({"class_names": json.dumps(list(reversed(CLASS_NAMES)))}, (), "class_names"),
        ({"class_names": json.dumps(list(CLASS_NAMES[:10]))}, (), "class_names"),
        ({"class_names": "Bread, Dairy product"}, (), "class_names"),
        ({"input_size": "sixty-four"}, (), "input_size"),
        ({"input_size": "0"}, (), "input_size"),
        ({}, ("class_names",), "lacks the ONNX metadata \\['class_names'\\]"),
        ({}, ("class_names", "input_size"), "lacks the ONNX metadata"),
    ],
    ids=["reordered-classes", "ten-classes", "names-not-json", "size-not-int", "size-zero",
         "no-class-names", "no-metadata"],
)
def test_models_breaking_the_contract_refuse_to_start(
    config: Config, tmp_path: Path, metadata: dict, drop: tuple[str, ...], message: str
) -> None:
    path = _save_variant(config.model_path, tmp_path / "model.onnx", drop, **metadata)
    with pytest.raises(ModelLoadError, match=message):
        create_app(Config(model_path=path, versions_file=config.versions_file))


def test_model_failing_its_warm_up_refuses_to_start(config: Config, tmp_path: Path) -> None:
    # The graph's input is fixed at 64 px; metadata that declares 32 px cannot run.
    path = _save_variant(config.model_path, tmp_path / "model.onnx", input_size=32)
    with pytest.raises(ModelLoadError, match="warm-up inference failed"):
        create_app(Config(model_path=path))


def test_missing_or_non_onnx_file_refuses_to_start(config: Config, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        create_app(Config(model_path=tmp_path / "absent.onnx"))
    pth = config.model_path.with_name(TORCH_FILE)  # the PyTorch file is not what the app runs
    with pytest.raises(ModelLoadError, match="is not an ONNX model"):
        create_app(Config(model_path=pth))
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelLoadError, match="is not an ONNX model"):
        create_app(Config(model_path=tmp_path / "junk.onnx"))


def test_bad_architecture_model_is_ready_but_answers_the_same_for_every_photo(
    trained_models: dict[str, Path], config: Config
) -> None:
    bad = create_app(Config(model_path=trained_models["bad-architecture"],
                            versions_file=config.versions_file)).test_client()
    assert bad.get("/readyz").status_code == 200  # its warm-up runs fine
    answers = [post(bad, sample_bytes(name)).json for name in CLASS_NAMES]
    assert all(a["prediction"] in CLASS_NAMES for a in answers)
    assert all(a["top"] == answers[0]["top"] for a in answers)  # one photo at a time: no signal
    assert post(bad, b"junk").status_code == 400  # client errors are still the client's
    assert bad.get("/healthz").status_code == 200
