"""The model keeps the serving contract of app/food11.py."""

import torch

from app.food11 import CLASS_NAMES


def test_class_names_follow_serving_order(model):
    """The app labels logit i with CLASS_NAMES[i]; the model must agree."""
    assert list(model.class_names) == list(CLASS_NAMES)


def test_input_size_is_declared(model):
    """The app warms the model up at this size."""
    assert isinstance(model.input_size, int) and model.input_size > 0


def test_outputs_one_finite_logit_per_class(model):
    """A batch of two images gives a 2 x 11 block of finite numbers."""
    size = model.input_size
    with torch.no_grad():
        logits = model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, len(CLASS_NAMES))
    assert torch.isfinite(logits).all()
