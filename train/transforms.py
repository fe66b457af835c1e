"""Training-side image transforms built on the serving contract's preprocessing."""

from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms

from app.food11 import IMAGE_SIZE, preprocess, to_array


class EvalTransform:
    """app.food11.preprocess as a torch tensor: what the app does to every request."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Preprocess one image to a 3 x size x size tensor."""
        return torch.from_numpy(preprocess(image, self.size))


class ToNormalisedTensor:
    """app.food11.to_array as a torch tensor (the last step of the training transform)."""

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Scale and normalise one image like the serving preprocessing does."""
        return torch.from_numpy(to_array(image))


def eval_transform(size: int = IMAGE_SIZE) -> EvalTransform:
    """Deterministic preprocessing used by evaluation; the same as the app's."""
    return EvalTransform(size)


def train_transform(size: int = IMAGE_SIZE) -> transforms.Compose:
    """Training preprocessing: random square crops, flips, small rotations and lighting."""
    return transforms.Compose([
        transforms.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(0.9, 1.1)),
        transforms.RandomHorizontalFlip(),
        transforms.RandomRotation(10),
        transforms.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        ToNormalisedTensor(),
    ])
