"""make bench-train: its Food-11-shaped set and its side-by-side table (speed not asserted)."""

from __future__ import annotations

from pathlib import Path

import bench
import config
from dataset import check_dataset
from PIL import Image
from sample_data import PHOTO_MARKER, make_photo_set

from app.food11 import CLASS_NAMES, folder_name


def test_the_photo_set_has_food11s_layout_names_and_size(tmp_path: Path):
    """Every split, every class, `<class>_<n>.jpg` JPEGs of the asked size; made only once."""
    root = make_photo_set(tmp_path / "photos", per_class=2, size=(48, 36))
    assert check_dataset(root) == {"training": 22, "validation": 22, "evaluation": 22}
    soup = root / "evaluation" / folder_name(CLASS_NAMES[9])
    assert sorted(p.name for p in soup.iterdir()) == ["9_0.jpg", "9_1.jpg"]
    with Image.open(soup / "9_1.jpg") as image:
        assert (image.format, image.size) == ("JPEG", (48, 36))
    first = (soup / "9_1.jpg").stat().st_mtime_ns
    make_photo_set(root, per_class=2, size=(48, 36))  # the same set: kept
    assert (soup / "9_1.jpg").stat().st_mtime_ns == first
    make_photo_set(root, per_class=1, size=(48, 36))  # another: remade, no stale files
    assert sorted(p.name for p in soup.iterdir()) == ["9_0.jpg"]
    assert '"per_class": 1' in (root / PHOTO_MARKER).read_text()


def result(total: float, cached: bool, registered: bool = True) -> dict:
    """A flow.py timings report with two head epochs and one fine-tune epoch."""
    feature = 20.0 if cached else 0.0
    head = 0.5 if cached else 30.0
    epochs = [{"epoch_seconds": head + feature, "feature_seconds": feature,
               "images_per_second": 550 / (head + feature)},
              {"epoch_seconds": head, "feature_seconds": 0.0, "images_per_second": 550 / head},
              {"epoch_seconds": 35.0, "feature_seconds": 0.0, "images_per_second": 30.0}]
    return {"total": total, "train": total - 50, "evaluate": 30.0, "epochs": epochs,
            "head_epochs": 2, "registered": registered, "tests_passed": 9 if registered else 7,
            "failed_tests": [] if registered else ["test_accuracy", "test_recall"],
            "tests_total": 9, "accuracy": 0.8}


def test_the_table_puts_the_runs_side_by_side():
    """One column per run; head epochs without the feature pass, which has its own row."""
    text = bench.table({"recomputed": result(160.0, False), "cached": result(80.0, True)})
    lines = text.splitlines()
    assert lines[0] == "| | recomputed | cached |"
    row = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in lines[2:]}
    assert row["total"] == ["160.0 s", "80.0 s |"]
    assert row["features computed once"] == ["0.0 s", "20.0 s |"]
    assert row["each head epoch (without that)"] == ["30.0 / 30.0 s", "0.5 / 0.5 s |"]
    assert row["each fine-tune epoch"] == ["35.0 s", "35.0 s |"]
    assert row["evaluation suite"] == ["30.0 s", "30.0 s |"]
    assert row["gate"] == ["passed 9/9", "passed 9/9 |"]
    assert row["accuracy"] == ["0.800", "0.800 |"]
    failed = bench.rows(result(100.0, True, registered=False))
    assert failed["gate"] == "FAILED 7/9"


def test_the_verdict_compares_time_and_the_gate_decision():
    """Half the time with the same tests failing: within and the same; another decision: not."""
    old, new = result(160.0, False, registered=False), result(80.0, True, registered=False)
    assert bench.verdict("food11", old, new) == (
        "food11: cached / recomputed = 0.50 (within the 0.5 target); same gate result: True; "
        "accuracy 0.800 -> 0.800")
    line = bench.verdict("food11", result(100.0, False), result(60.0, True, registered=False))
    assert "(OVER the 0.5 target); same gate result: False" in line
    same = bench.verdict("sample", result(60.0, False), result(60.0, False), timed=False)
    assert same.endswith("(no time target); same gate result: True; accuracy 0.800 -> 0.800 "
                         "(unchanged)"), same
    moved = dict(result(60.0, False), accuracy=0.9)
    assert "(CHANGED)" in bench.verdict("sample", result(60.0, False), moved, timed=False)


def test_the_old_way_is_the_training_before_the_cache():
    """recomputed: nothing cached, the whole network fine-tuned; cached: the set's schedule
    (on the food11 subset, the last 5 blocks fine-tuned on their cached input)."""
    runs = bench.both_ways([("food11", Path("photos"), bench.FOOD11_FLAGS)])
    assert [r.name for r in runs] == ["food11 recomputed", "food11 cached"]
    flags = dict(zip(bench.FOOD11_FLAGS[::2], bench.FOOD11_FLAGS[1::2], strict=True))
    settings = {k.removeprefix("--"): v for k, v in flags.items()}
    old, new = (config.load_config(settings, env=r.env) for r in runs)
    assert (old.cache_features, old.finetune_blocks) == (0, 0)
    assert (new.cache_features, new.finetune_blocks) == (1, 5)
    assert (old.head_epochs, old.finetune_epochs) == (new.head_epochs, new.finetune_epochs)
