"""Time the training pipeline: what does not learn computed once, against every epoch.

    make bench-train            (or: python train/bench.py [scenario] [--skip-food11])

Runs `flow.py` as the workflow does, in a fresh process, against a throwaway local MLflow
store, so benchmarking never adds versions to your registry. Four runs, one after the
other: a Food-11-shaped set (550 training, 550 validation, 550 evaluation JPEGs of
512 x 384, `dataset=food11 subset=50`, made once by sample_data.make_photo_set), then the
sample set, each the old way (OLD_WAY: the backbone recomputed in every epoch, fine-tuning
the whole network) and cached (the data set's own schedule: cached for food11).
Targets: cached at most half the old total, with the same gate result; the sample set
under 90 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import config
from sample_data import make_photo_set

SAMPLE_TARGET_S = 90.0
CACHED_TARGET = 0.5  # cached total / recomputed total
PHOTO_DIR = config.REPO_ROOT / "data" / "food11-photos"
PHOTOS_PER_CLASS = 50
LOG_DIR = config.REPO_ROOT / "data" / "bench-logs"
FOOD11_FLAGS = ["--dataset", "food11", "--subset", str(PHOTOS_PER_CLASS)]
# The way before the cache: every epoch recomputes the backbone, fine-tuning trains it all.
OLD_WAY = {"TRAIN_CACHE_FEATURES": "0", "TRAIN_FINETUNE_BLOCKS": "0"}


@dataclass
class Run:
    """One benchmarked flow.py run: its name, data, flags and environment."""

    name: str
    data_dir: Path
    flags: list[str]
    env: dict[str, str]


def both_ways(sets: list[tuple[str, Path, list[str]]]) -> list[Run]:
    """Each set (name, folder, flags) the old way ("recomputed"), then cached."""
    ways = (("recomputed", OLD_WAY), ("cached", {}))  # cached: the set's own schedule
    return [Run(f"{name} {way}", folder, flags, env)
            for name, folder, flags in sets for way, env in ways]


def bench(scenario: str, run: Run, log: Path) -> dict:
    """Run the flow once in a temporary MLflow store, output to log; return timings and gate."""
    with tempfile.TemporaryDirectory(prefix="gourmetgram-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env.update(GOURMETGRAM_MLRUNS=str(Path(tmp) / "mlruns"),
                   FOOD11_DATA_DIR=str(run.data_dir),
                   PYTHONPATH=f"{config.REPO_ROOT}:{config.TRAIN_DIR}", **run.env)
        env.setdefault("TRAIN_WEIGHTS", "none")  # ImageNet weights cannot be downloaded here
        timings = Path(tmp) / "timings.json"
        cmd = [sys.executable, str(config.TRAIN_DIR / "flow.py"), scenario,
               "--version-file", str(Path(tmp) / "model_version"),
               "--timings-json", str(timings), *run.flags]
        start = time.perf_counter()
        with open(log, "w") as out:
            proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        total = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"flow.py ({run.name}) exited with {proc.returncode}; see {log}")
        result = json.loads(timings.read_text())
        version = (Path(tmp) / "model_version").read_text()
    result["total"] = total
    result["registered"] = bool(version)
    return result


def rows(result: dict) -> dict[str, str]:
    """The table's cells of one run, keyed by row name."""
    epochs, head = result["epochs"], result["head_epochs"]
    head_part, tune = epochs[:head], epochs[head:]

    def each(values: list[float], unit: str = "") -> str:
        return " / ".join(f"{v:.1f}" for v in values) + unit if values else "-"

    other = result["total"] - result["train"] - result["evaluate"]
    accuracy = result.get("accuracy")
    return {
        "total": f"{result['total']:.1f} s",
        "features computed once": f"{sum(e['feature_seconds'] for e in epochs):.1f} s",
        "each head epoch (without that)": each(
            [e["epoch_seconds"] - e["feature_seconds"] for e in head_part], " s"),
        "head images/s (1st with it)": each([e["images_per_second"] for e in head_part]),
        "each fine-tune epoch": each([e["epoch_seconds"] for e in tune], " s"),
        "fine-tune images/s": each([e["images_per_second"] for e in tune]),
        "training stage in all": f"{result['train']:.1f} s",
        "evaluation suite": f"{result['evaluate']:.1f} s",
        "start, data check, logging": f"{other:.1f} s",
        "gate": f"{'passed' if result['registered'] else 'FAILED'} "
                f"{result['tests_passed']}/{result['tests_total']}",
        "accuracy": "-" if accuracy is None else f"{accuracy:.3f}",
    }


def table(results: dict[str, dict]) -> str:
    """A Markdown table, one column per run."""
    cells = {name: rows(result) for name, result in results.items()}
    names = list(results)
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for row in next(iter(cells.values())):
        lines.append(f"| {row} | " + " | ".join(cells[n][row] for n in names) + " |")
    return "\n".join(lines)


def verdict(name: str, old: dict, new: dict, timed: bool = True) -> str:
    """One line: the time ratio against its target (if timed), the gate, the accuracy."""
    ratio = new["total"] / old["total"]
    same = (new["registered"], sorted(new["failed_tests"])) == (old["registered"],
                                                                sorted(old["failed_tests"]))
    accuracy = " -> ".join("-" if r.get("accuracy") is None else f"{r['accuracy']:.3f}"
                           for r in (old, new))
    target = (f" ({'within' if ratio <= CACHED_TARGET else 'OVER'} the {CACHED_TARGET} target)"
              if timed else " (no time target)")
    unchanged = "" if timed else (
        f" ({'unchanged' if old.get('accuracy') == new.get('accuracy') else 'CHANGED'})")
    return (f"{name}: cached / recomputed = {ratio:.2f}{target}; same gate result: {same}; "
            f"accuracy {accuracy}{unchanged}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the side-by-side table and the verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default="normal", choices=config.SCENARIOS)
    parser.add_argument("--skip-food11", action="store_true",
                        help="only the sample set (no Food-11-shaped runs)")
    parser.add_argument("--photos", type=Path, default=PHOTO_DIR,
                        help="where the Food-11-shaped set is made once")
    parser.add_argument("--logs", type=Path, default=LOG_DIR,
                        help="folder for the output of each flow.py run")
    args = parser.parse_args(argv)
    args.logs.mkdir(parents=True, exist_ok=True)
    sample = Path(os.environ.get("FOOD11_DATA_DIR") or config.DATASETS["sample"]["data_dir"])
    sets = [("sample", sample, [])]
    if not args.skip_food11:
        print(f"making the Food-11-shaped set in {args.photos} (once)...", flush=True)
        make_photo_set(args.photos, PHOTOS_PER_CLASS)
        sets.insert(0, ("food11", args.photos, FOOD11_FLAGS))
    runs = both_ways(sets)
    results = {}
    for run in runs:
        print(f"benchmarking flow.py {args.scenario}: {run.name} on {run.data_dir} "
              f"({os.cpu_count()} CPUs)...", flush=True)
        log = args.logs / f"{run.name.replace(' ', '-')}.log"
        results[run.name] = bench(args.scenario, run, log)
    print(table(results))
    for name, _, _ in sets:
        # The time target is the Food-11 subset's; the sample set's is its accuracy unchanged.
        print(verdict(name, results[f"{name} recomputed"], results[f"{name} cached"],
                      timed=name == "food11"))
    total = results["sample cached"]["total"]
    print(f"sample: {total:.1f} s cached, {'within' if total <= SAMPLE_TARGET_S else 'OVER'} "
          f"the {SAMPLE_TARGET_S:.0f} s target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
