"""Make a small SYNTHETIC stand-in for Food-11, in the same folder layout.

These are not food photos. Each class is a drawn pattern (a shape or texture) in a palette
loosely inspired by its food, placed at a random position and scale on a noisy background.
The set is just hard enough that MobileNetV2 has to learn, and small enough to train on a
laptop CPU in under a minute. Use the real Food-11 data for anything beyond plumbing.

    python train/sample_data.py data/food11-sample
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Callable
from pathlib import Path

import config  # also makes app/ importable when run as a script
import numpy as np
from dataset import SPLITS
from PIL import Image, ImageDraw, ImageFilter

from app.food11 import CLASS_NAMES, folder_name

Color = tuple[int, int, int]
Box = tuple[float, float, float, float]

APP_SAMPLES_DIR = config.REPO_ROOT / "app" / "samples"


def _shade(rng: random.Random, color: Color, spread: int = 25) -> Color:
    """Return color with each channel moved by a random amount up to spread."""
    return tuple(min(255, max(0, c + rng.randint(-spread, spread))) for c in color)


def _loaf(d: ImageDraw.ImageDraw, box: Box, fg: Color, rng: random.Random) -> None:
    """A wide rounded loaf with darker score marks."""
    x0, y0, x1, y1 = box
    d.rounded_rectangle((x0, y0 + (y1 - y0) * 0.25, x1, y1 - (y1 - y0) * 0.1),
                        radius=(x1 - x0) * 0.2, fill=fg)
    dark = tuple(int(c * 0.6) for c in fg)
    for i in range(3):
        cx = x0 + (x1 - x0) * (0.3 + 0.2 * i)
        d.line((cx - 4, y0 + (y1 - y0) * 0.4, cx + 4, y0 + (y1 - y0) * 0.7), fill=dark, width=3)


def _block(d: ImageDraw.ImageDraw, box: Box, fg: Color, rng: random.Random) -> None:
    """A square block with a few holes (cheese)."""
    d.rectangle(box, fill=fg)
    x0, y0, x1, y1 = box
    hole = tuple(int(c * 0.8) for c in fg)
    for _ in range(4):
        r = (x1 - x0) * 0.08
        cx, cy = rng.uniform(x0 + r, x1 - r), rng.uniform(y0 + r, y1 - r)
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=hole)


def _wedge(d: ImageDraw.ImageDraw, box: Box, fg: Color, rng: random.Random) -> None:
    """A triangular slice with a cream layer (cake)."""
    x0, y0, x1, y1 = box
    d.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fg)
    ym = y0 + (y1 - y0) * 0.6
    d.line((x0 + (x1 - x0) * 0.2, ym, x1 - (x1 - x0) * 0.2, ym), fill=(250, 245, 235), width=4)


def _egg(d: ImageDraw.ImageDraw, box: Box, fg: Color, rng: random.Random) -> None:
    """A white disc with a yellow yolk."""
    d.ellipse(box, fill=fg)
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 0.2
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_shade(rng, (245, 185, 30), 15))


def _sticks(d: ImageDraw.ImageDraw, box: Box, fg: Color, rng: random.Random) -> None:
    """A bundle of slanted sticks (fries)."""
    x0, y0, x1, y1 = box
    for _ in range(7):
        x = rng.uniform(x0, x1)
        d.line((x, y1, x + rng.uniform(-8, 8), y0), fill=_shade(rng, fg, 15), width=5)


def _steak(d: ImageDraw.ImageDraw, box: Box, fg: Color, rng: random.Random) -> None:
    """An ellipse with dark diagonal grill marks."""
    d.ellipse(box, fill=fg)
    x0, y0, x1, y1 = box
    for i in range(1, 4):
        x = x0 + (x1 - x0) * i / 4
        d.line((x - 6, y0 + 6, x + 6, y1 - 6), fill=(50, 20, 15), width=3)


def _waves(d: ImageDraw.ImageDraw, box: Box, fg: Color, rng: random.Random) -> None:
    """Several wavy strands (noodles)."""
    x0, y0, x1, y1 = box
    for k in range(5):
        y = y0 + (y1 - y0) * (k + 0.5) / 5
        pts = [(x, y + 4 * math.sin((x - x0) / 5 + k)) for x in np.linspace(x0, x1, 20)]
        d.line(pts, fill=_shade(rng, fg, 10), width=3)


def _grains(d: ImageDraw.ImageDraw, box: Box, fg: Color, rng: random.Random) -> None:
    """Many small grains scattered over an area (rice)."""
    x0, y0, x1, y1 = box
    for _ in range(40):
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        d.ellipse((cx - 2.5, cy - 1.5, cx + 2.5, cy + 1.5), fill=_shade(rng, fg, 10))


def _fish(d: ImageDraw.ImageDraw, box: Box, fg: Color, rng: random.Random) -> None:
    """An oval body with a tail (seafood)."""
    x0, y0, x1, y1 = box
    xm, ym, h = x0 + (x1 - x0) * 0.7, (y0 + y1) / 2, (y1 - y0) * 0.3
    d.ellipse((x0, ym - h, xm, ym + h), fill=fg)
    d.polygon([(xm - 4, ym), (x1, ym - h), (x1, ym + h)], fill=fg)


def _bowl(d: ImageDraw.ImageDraw, box: Box, fg: Color, rng: random.Random) -> None:
    """A bowl seen from above: thick dark rim, coloured soup, a few green herbs."""
    d.ellipse(box, fill=(70, 45, 35))
    x0, y0, x1, y1 = box
    m = (x1 - x0) * 0.16
    d.ellipse((x0 + m, y0 + m, x1 - m, y1 - m), fill=fg)
    for _ in range(4):
        cx, cy = rng.uniform(x0 + 2 * m, x1 - 2 * m), rng.uniform(y0 + 2 * m, y1 - 2 * m)
        d.rectangle((cx - 2, cy - 2, cx + 2, cy + 2), fill=(60, 150, 50))


def _leaves(d: ImageDraw.ImageDraw, box: Box, fg: Color, rng: random.Random) -> None:
    """A cluster of small round leaves or fruits."""
    x0, y0, x1, y1 = box
    r = (x1 - x0) * 0.18
    for _ in range(5):
        cx, cy = rng.uniform(x0 + r, x1 - r), rng.uniform(y0 + r, y1 - r)
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_shade(rng, fg, 20))


Painter = Callable[[ImageDraw.ImageDraw, Box, Color, random.Random], None]

# One look per class, in CLASS_NAMES order: (food colour, background colour, pattern).
LOOKS: tuple[tuple[Color, Color, Painter], ...] = (
    ((200, 145, 80), (95, 65, 45), _loaf),  # Bread
    ((245, 225, 150), (150, 80, 120), _block),  # Dairy product
    ((235, 120, 165), (250, 225, 200), _wedge),  # Dessert
    ((250, 250, 245), (55, 55, 60), _egg),  # Egg
    ((225, 165, 45), (70, 60, 150), _sticks),  # Fried food
    ((135, 35, 30), (215, 210, 195), _steak),  # Meat
    ((240, 215, 125), (160, 45, 35), _waves),  # Noodles/Pasta
    ((245, 245, 240), (30, 115, 45), _grains),  # Rice
    ((250, 135, 90), (30, 95, 145), _fish),  # Seafood
    ((225, 105, 40), (125, 125, 130), _bowl),  # Soup
    ((70, 170, 60), (225, 205, 70), _leaves),  # Vegetable/Fruit
)
assert len(LOOKS) == len(CLASS_NAMES)


def draw_image(class_index: int, rng: random.Random, size: int = 64) -> Image.Image:
    """Draw one synthetic image of the given class, size x size pixels."""
    return draw_photo(class_index, rng, size, size)


def draw_photo(class_index: int, rng: random.Random, width: int, height: int) -> Image.Image:
    """Draw one synthetic image of the given class, width x height pixels (any aspect)."""
    fg, bg, paint = LOOKS[class_index]
    big_w, big_h = width * 2, height * 2  # draw at twice the size, then downsample
    img = Image.new("RGB", (big_w, big_h), _shade(rng, bg))
    d = ImageDraw.Draw(img)
    side = rng.uniform(0.45, 0.8) * min(big_w, big_h)
    x0, y0 = rng.uniform(0, big_w - side), rng.uniform(0, big_h - side)
    paint(d, (x0, y0, x0 + side, y0 + side), _shade(rng, fg), rng)
    img = img.resize((width, height), Image.Resampling.LANCZOS)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.6)))
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, 8, (height, width, 3))
    pixels = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def write_splits(
    root: Path, counts: dict[str, int], rng_key: str,
    draw: Callable[[int, random.Random], Image.Image], file_name: Callable[[int, int], str],
) -> None:
    """Fill root/<split>/<class>/ with counts[split] drawn images each, old ones removed.

    Each (split, class) gets its own random stream, f"{rng_key}-{split index}-{class index}",
    so one folder's images do not depend on the counts of the others.
    """
    for split_index, (split, count) in enumerate(counts.items()):
        for class_index, name in enumerate(CLASS_NAMES):
            rng = random.Random(f"{rng_key}-{split_index}-{class_index}")
            folder = root / split / folder_name(name)
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob("*.jpg"):  # re-running with smaller counts leaves no extras
                stale.unlink()
            for i in range(count):
                draw(class_index, rng).save(folder / file_name(class_index, i), quality=90)


def make_sample_set(
    root: Path,
    train_per_class: int = 40,
    val_per_class: int = 10,
    eval_per_class: int = 10,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write the synthetic set under root/{training,validation,evaluation}/<class>/; return root."""
    root = Path(root)
    counts = {"training": train_per_class, "validation": val_per_class,
              "evaluation": eval_per_class}
    if min(counts.values()) < 1 or size < 8:
        raise ValueError("need at least one image per class and split, and size >= 8")
    write_splits(root, counts, str(seed), lambda c, rng: draw_image(c, rng, size),
                 lambda _c, i: f"{i:04d}.jpg")
    (root / "README.txt").write_text(
        "SYNTHETIC sample data made by train/sample_data.py: drawn patterns, not food photos.\n"
    )
    return root


# A stand-in for Food-11 on machines that cannot download it (bench.py): its photo size
# and file names, drawn like the sample set.
PHOTO_SIZE = (512, 384)
PHOTO_MARKER = ".photo-set.json"


def make_photo_set(
    root: Path, per_class: int = 50, size: tuple[int, int] = PHOTO_SIZE, seed: int = 0
) -> Path:
    """Write a Food-11-shaped synthetic set (prepared layout, `<class>_<n>.jpg`); return root.

    Every split gets per_class images of every class, width x height pixels. A folder that
    already holds a set made with the same arguments is kept as it is (the marker file).
    """
    root = Path(root)
    wanted = json.dumps({"per_class": per_class, "size": list(size), "seed": seed})
    marker = root / PHOTO_MARKER
    if marker.is_file() and marker.read_text() == wanted:
        return root
    write_splits(root, dict.fromkeys(SPLITS, per_class), f"photo-{seed}",
                 lambda c, rng: draw_photo(c, rng, *size), lambda c, i: f"{c}_{i}.jpg")
    marker.write_text(wanted)
    return root


def write_app_samples(
    directory: Path = APP_SAMPLES_DIR, size: int = 96, seed: int = 7
) -> list[Path]:
    """Write one small synthetic JPEG per class, named after the class, for the app's /test."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for class_index, name in enumerate(CLASS_NAMES):
        path = directory / f"{folder_name(name)}.jpg"
        draw_image(class_index, random.Random(f"app-{seed}-{class_index}"), size).save(
            path, quality=85
        )
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command line: write the sample set to OUT_DIR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path,
                        help="where to write training/, validation/ and evaluation/")
    parser.add_argument("--per-class", type=int, default=40, help="training images per class")
    parser.add_argument("--holdout-per-class", type=int, default=10,
                        help="validation and evaluation images per class")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--app-samples", type=Path, default=None,
                        help="also write one image per class to this folder")
    args = parser.parse_args(argv)
    try:
        make_sample_set(args.out_dir, args.per_class, args.holdout_per_class,
                        args.holdout_per_class, args.size, args.seed)
    except ValueError as err:
        parser.error(str(err))
    if args.app_samples:
        write_app_samples(args.app_samples)
    print(f"wrote synthetic sample set to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
