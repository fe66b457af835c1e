"""The ONNX model keeps the serving contract of app/food11.py."""

import numpy as np

from app.food11 import CLASS_NAMES


def test_class_names_follow_serving_order(model):
    """The app labels logit i with CLASS_NAMES[i]; the metadata must agree."""
    assert model.class_names == list(CLASS_NAMES), model.metadata


def test_input_size_is_declared_and_accepted(model):
    """input_size is a positive integer, and the graph's input is N x 3 x size x size."""
    assert model.input_size is not None and model.input_size > 0, model.metadata
    shape = model.session.get_inputs()[0].shape
    assert shape[1:] == [3, model.input_size, model.input_size], shape


def test_outputs_one_finite_logit_per_class(model, input_size):
    """A batch of two images gives a 2 x 11 block of finite numbers."""
    images = np.random.default_rng(0).standard_normal((2, 3, input_size, input_size))
    logits = model(images.astype(np.float32))
    assert logits.shape == (2, len(CLASS_NAMES))
    assert np.isfinite(logits).all()
