"""The serving contract: Food-11 class order, input size default and preprocessing.

Training and the app both preprocess through `preprocess`, so the model sees the same
numbers in both. Pillow and NumPy only: the app image has no torch, and the training image
copies this file alone.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# The 11 Food-11 classes in the dataset's own index order (class 0 is Bread).
# A model's output logit i always means CLASS_NAMES[i].
CLASS_NAMES: tuple[str, ...] = (
    "Bread",
    "Dairy product",
    "Dessert",
    "Egg",
    "Fried food",
    "Meat",
    "Noodles/Pasta",
    "Rice",
    "Seafood",
    "Soup",
    "Vegetable/Fruit",
)

# Default side length, in pixels, that training uses for the small synthetic sample set.
# The app never reads it: it serves at the size recorded in the model file's metadata.
IMAGE_SIZE = 64

# ImageNet channel statistics: MobileNetV2's pretrained weights expect inputs scaled this way.
MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_MEAN = np.asarray(MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD = np.asarray(STD, dtype=np.float32).reshape(3, 1, 1)


def folder_name(class_name: str) -> str:
    """Return the on-disk folder (or sample file) name of a class: '/' becomes '-'."""
    return class_name.replace("/", "-")


def center_square(image: Image.Image) -> Image.Image:
    """The largest centred square of an image.

    Cropping before resizing keeps memory bounded: resizing the short side of a 1 x 1,000,000
    image to 64 pixels first would allocate a 64 x 64,000,000 image (16 GB).
    """
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def to_array(image: Image.Image) -> np.ndarray:
    """An RGB image as a normalised float32 array, channels first (3 x H x W)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / np.float32(255)
    return (pixels.transpose(2, 0, 1) - _MEAN) / _STD


def preprocess(image: Image.Image, size: int) -> np.ndarray:
    """The deterministic preprocessing of evaluation and of every request: 3 x size x size."""
    square = center_square(image.convert("RGB"))
    return to_array(square.resize((size, size), Image.Resampling.BILINEAR))
