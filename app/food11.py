"""The serving contract: Food-11 class order, input size and preprocessing.

Training imports this module so that the model it produces expects exactly what the app
sends it. Keep it free of web-framework imports: the training image copies this file alone.
"""

from __future__ import annotations

from PIL import Image
from torchvision import transforms

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

# Side length, in pixels, of the square image the model sees, in training and in serving.
# 64 suits the small synthetic sample set on a CPU. For the real Food-11 photos use 224
# (MobileNetV2's native size): change it here, rebuild both images and retrain.
IMAGE_SIZE = 64

# ImageNet channel statistics: MobileNetV2's pretrained weights expect inputs scaled this way.
MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


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


def eval_transform(size: int = IMAGE_SIZE) -> transforms.Compose:
    """Deterministic preprocessing used by evaluation and by the app for every request."""
    return transforms.Compose([
        center_square,
        transforms.Resize((size, size)),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])


def train_transform(size: int = IMAGE_SIZE) -> transforms.Compose:
    """Training preprocessing: random square crops, flips, small rotations and lighting."""
    return transforms.Compose([
        transforms.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(0.9, 1.1)),
        transforms.RandomHorizontalFlip(),
        transforms.RandomRotation(10),
        transforms.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
