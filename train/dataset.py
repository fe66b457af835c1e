"""Load Food-11 (or the synthetic sample set) from ImageFolder-style directories.

Layout under the data root: training/, validation/ and evaluation/, each with one folder per
class. A class folder is named after the class ('Noodles-Pasta', see app.food11.folder_name)
or by index ('class_06', as in the upstream lab's data pipeline). The class index always
follows app.food11.CLASS_NAMES, never the alphabetical order of the folder names.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from app.food11 import CLASS_NAMES, folder_name

SPLITS: tuple[str, ...] = ("training", "validation", "evaluation")


class DataError(Exception):
    """The dataset is missing or malformed; the message names the offending path."""


def class_folders(split_dir: Path) -> list[str]:
    """Return the folder of each class of one split, in CLASS_NAMES order."""
    if not split_dir.is_dir():
        raise DataError(f"missing dataset split directory: {split_dir}")
    folders = []
    for index, name in enumerate(CLASS_NAMES):
        candidates = [folder_name(name), f"class_{index:02d}"]
        found = [c for c in candidates if (split_dir / c).is_dir()]
        if not found:
            raise DataError(f"missing class folder {split_dir / candidates[0]} "
                            f"(or {candidates[1]}) for class {name!r}")
        folder = found[0]
        if not any(p.suffix.lower() in IMG_EXTENSIONS for p in (split_dir / folder).iterdir()):
            raise DataError(f"no images in class folder {split_dir / folder}")
        folders.append(folder)
    return folders


def check_dataset(root: Path) -> dict[str, int]:
    """Check the layout of all three splits; return the image count of each split."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset directory not found: {root} (set FOOD11_DATA_DIR)")
    counts = {}
    for split in SPLITS:
        split_dir = root / split
        counts[split] = sum(
            1 for folder in class_folders(split_dir) for p in (split_dir / folder).iterdir()
            if p.suffix.lower() in IMG_EXTENSIONS
        )
    return counts


def _open_rgb(path: str) -> Image.Image:
    """Read one image as RGB, or raise DataError naming the file."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


class Food11Folder(ImageFolder):
    """ImageFolder whose class indices follow CLASS_NAMES, whatever the folders are called."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        """Map each class folder to its Food-11 index."""
        folders = class_folders(Path(directory))
        return folders, {folder: i for i, folder in enumerate(folders)}

    def __init__(self, root: Path, transform=None, subset: int = 0) -> None:
        super().__init__(str(root), transform=transform, loader=_open_rgb)
        if subset > 0:  # the first `subset` images of each class, in file-name order
            kept, seen = [], [0] * len(self.classes)
            for path, target in self.samples:
                if seen[target] < subset:
                    kept.append((path, target))
                    seen[target] += 1
            self.samples = self.imgs = kept
            self.targets = [target for _, target in kept]


def make_loader(
    root: Path, split: str, transform, batch_size: int, shuffle: bool = False,
    workers: int = 0, seed: int = 0, subset: int = 0,
) -> DataLoader:
    """A DataLoader over one split of the dataset (at most `subset` images per class if > 0)."""
    dataset = Food11Folder(Path(root) / split, transform=transform, subset=subset)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
        persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
    )
