"""The synthetic sample set: layout, determinism, class order and the app's sample images."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sample_data import LOOKS, make_sample_set, write_app_samples

from app.config import sample_file
from app.food11 import CLASS_NAMES, folder_name


def _digest(root: Path) -> str:
    """Hash of every file's relative path and bytes under root."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_layout_has_three_splits_with_every_class(sample_data: Path):
    """training/ validation/ evaluation/ each hold one folder per class, 40/10/10 images."""
    for split, count in (("training", 40), ("validation", 10), ("evaluation", 10)):
        folders = sorted(p.name for p in (sample_data / split).iterdir())
        assert folders == sorted(folder_name(c) for c in CLASS_NAMES)
        for folder in folders:
            images = list((sample_data / split / folder).glob("*.jpg"))
            assert len(images) == count, f"{split}/{folder}"
    with Image.open(next((sample_data / "training" / "Bread").glob("*.jpg"))) as img:
        assert img.size == (64, 64) and img.mode == "RGB"
    assert "SYNTHETIC" in (sample_data / "README.txt").read_text()


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path):
    """Generation is deterministic for a seed."""
    a = make_sample_set(tmp_path / "a", 2, 1, 1, seed=3)
    b = make_sample_set(tmp_path / "b", 2, 1, 1, seed=3)
    c = make_sample_set(tmp_path / "c", 2, 1, 1, seed=4)
    assert _digest(a) == _digest(b) != _digest(c)


def test_rerun_with_fewer_images_leaves_no_stale_files(tmp_path: Path):
    """Regenerating into the same folder replaces the images instead of mixing sets."""
    make_sample_set(tmp_path, 3, 2, 2)
    make_sample_set(tmp_path, 1, 1, 1)
    assert len(list((tmp_path / "training" / "Egg").iterdir())) == 1


def test_one_look_per_class_and_folder_names_have_no_slash():
    """Each class has its own pattern and its folder name is a valid path component."""
    assert len(LOOKS) == len(CLASS_NAMES) == 11
    assert len({paint for _, _, paint in LOOKS}) == 11
    assert folder_name("Noodles/Pasta") == "Noodles-Pasta"


def test_bad_counts_are_refused(tmp_path: Path):
    """Zero images per class is an error, and nothing is written."""
    with pytest.raises(ValueError, match="at least one image"):
        make_sample_set(tmp_path / "x", train_per_class=0)
    assert not (tmp_path / "x").exists()


def test_command_line_writes_the_set(tmp_path: Path, repo: Path):
    """python train/sample_data.py OUT_DIR works as make sample-data calls it."""
    out = tmp_path / "cli"
    subprocess.run([sys.executable, str(repo / "train" / "sample_data.py"), str(out),
                    "--per-class", "2", "--holdout-per-class", "1"], check=True,
                   capture_output=True, cwd=tmp_path)
    assert len(list((out / "validation").rglob("*.jpg"))) == 11


def test_app_samples_are_committed_small_and_readable(repo: Path, tmp_path: Path):
    """app/samples/ holds one small JPEG per class, the ones write_app_samples makes now."""
    committed = repo / "app" / "samples"
    for name in CLASS_NAMES:
        path = sample_file(name, committed)
        assert path.is_file(), path
        assert path.stat().st_size < 8000
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
    fresh = write_app_samples(tmp_path)
    assert sorted(p.name for p in fresh) == sorted(p.name for p in committed.glob("*.jpg"))
    for path in fresh:  # a change to LOOKS must come with new samples (--app-samples)
        with Image.open(path) as new, Image.open(committed / path.name) as old:
            gap = np.abs(np.asarray(new, dtype=np.int16) - np.asarray(old, dtype=np.int16))
        assert gap.mean() < 2, f"app/samples/{path.name} is stale: re-run --app-samples"
