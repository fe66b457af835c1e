"""pytest plugin for the evaluation suite: count how often each input image is scored.

    python -m pytest ... -p tests.count_scoring     (COUNT_SCORING_OUT=counts.json)

Wraps evaluate.OnnxModel.__call__ and counts every image of every batch by a digest of its
float32 pixels; at the end of the session writes {digest: times scored} to COUNT_SCORING_OUT.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

COUNTS: Counter[str] = Counter()


def digest(image: np.ndarray) -> str:
    """A digest of one 3 x S x S image as the model receives it."""
    return hashlib.sha1(np.ascontiguousarray(image, np.float32).tobytes()).hexdigest()


def pytest_configure(config: pytest.Config) -> None:
    """Count the images of every call of the served model."""
    import evaluate

    original = evaluate.OnnxModel.__call__

    def counted(self, images: np.ndarray) -> np.ndarray:
        COUNTS.update(digest(image) for image in images)
        return original(self, images)

    evaluate.OnnxModel.__call__ = counted


def pytest_unconfigure(config: pytest.Config) -> None:
    """Write the counts."""
    Path(os.environ["COUNT_SCORING_OUT"]).write_text(json.dumps(COUNTS))
