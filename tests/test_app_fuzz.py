"""Property-based fuzzing of POST /predict: no input yields a 5xx, and the app keeps serving."""

from __future__ import annotations

import io

import numpy as np
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.config import Config
from app.food11 import CLASS_NAMES
from app.web import create_app
from tests.test_app import png_claiming, post, sample_bytes

# Formats and the modes each can store (the combinations Pillow writes).
FORMATS = {
    "JPEG": ["L", "RGB", "CMYK"],
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"],
    "WEBP": ["RGB", "RGBA"],
    "GIF": ["L", "P"],
    "BMP": ["1", "L", "P", "RGB"],
}
CLIENT_ERRORS = {400, 413}
FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def client(trained_models, tmp_path_factory) -> FlaskClient:
    """The app serving the trained normal model, with a small pixel limit for fast fuzzing."""
    versions = tmp_path_factory.mktemp("fuzz") / "versions.txt"
    versions.write_text("1\n")
    config = Config(model_path=trained_models["normal"], versions_file=versions,
                    max_image_pixels=2_000_000)
    return create_app(config).test_client()


@st.composite
def images(draw: st.DrawFn) -> bytes:
    """A valid encoded image of any size, format and storable mode, with random pixels."""
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt]))
    width = draw(st.integers(1, 300))
    height = draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    if mode == "I;16":  # 16-bit grey: Pillow has no direct conversion from RGB
        image = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
    else:
        image = image.convert(mode)
    buf = io.BytesIO()
    # FORMATS lists only what the pinned Pillow writes: a failure here is a test bug to see.
    image.save(buf, format=fmt)
    return buf.getvalue()


def still_serving(client: FlaskClient) -> None:
    """The app still answers health checks and real predictions."""
    assert client.get("/healthz").status_code == 200
    assert post(client, sample_bytes("Bread")).status_code == 200


def check_answer(client: FlaskClient, data: bytes) -> int:
    """POST data; the answer must be a 200 prediction or a JSON 4xx error, never a 5xx."""
    reply = post(client, data)
    assert reply.status_code in {200} | CLIENT_ERRORS, (reply.status_code, reply.json)
    if reply.status_code == 200:
        assert reply.json["prediction"] in CLASS_NAMES
    else:
        assert reply.json["error"]
    still_serving(client)
    return reply.status_code


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_never_give_5xx(client: FlaskClient, data: bytes) -> None:
    check_answer(client, data)


@FUZZ
@given(data=images())
def test_valid_images_of_any_format_mode_and_size_are_classified(
    client: FlaskClient, data: bytes
) -> None:
    assert check_answer(client, data) == 200


@FUZZ
@given(data=images(), cut=st.floats(0.0, 1.0))
def test_truncated_images_never_give_5xx(client: FlaskClient, data: bytes, cut: float) -> None:
    check_answer(client, data[: int(len(data) * cut)])


@FUZZ
@given(data=images(), edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                     min_size=1, max_size=20))
def test_corrupted_images_never_give_5xx(
    client: FlaskClient, data: bytes, edits: list[tuple[float, int]]
) -> None:
    corrupt = bytearray(data)
    for where, value in edits:
        corrupt[min(len(corrupt) - 1, int(where * len(corrupt)))] = value
    check_answer(client, bytes(corrupt))


@FUZZ
@given(width=st.integers(1, 2**31 - 1), height=st.integers(1, 2**31 - 1))
def test_any_declared_dimensions_never_give_5xx(
    client: FlaskClient, width: int, height: int
) -> None:
    status = check_answer(client, png_claiming(width, height))
    if width * height > 2_000_000:
        assert status == 413
