"""Time the training pipeline on the sample set: the whole run and each stage.

    make bench-train            (or: FOOD11_DATA_DIR=data/food11-sample python train/bench.py)

Runs `flow.py` as the workflow does, in a fresh process, against a throwaway local MLflow
store, so benchmarking never adds versions to your registry. Target: under 90 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import config

STAGES = {
    "load_data": "check dataset, reach MLflow",
    "train": "build + train (+ widen for oversized, + layers for slow)",
    "evaluate": "pytest evaluation suite",
    "log_register": "log metrics and model, register",
}
TARGET_S = 90.0


def bench(scenario: str, extra: list[str]) -> dict[str, float]:
    """Run the flow once in a temporary MLflow store; return wall time per stage and in all."""
    with tempfile.TemporaryDirectory(prefix="gourmetgram-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env.update(GOURMETGRAM_MLRUNS=str(Path(tmp) / "mlruns"),
                   PYTHONPATH=f"{config.REPO_ROOT}:{config.TRAIN_DIR}")
        env.setdefault("TRAIN_WEIGHTS", "none")  # the documented figure is for random init
        timings = Path(tmp) / "timings.json"
        cmd = [sys.executable, str(config.TRAIN_DIR / "flow.py"), scenario,
               "--version-file", str(Path(tmp) / "model_version"),
               "--timings-json", str(timings), *extra]
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)
        total = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"flow.py exited with {proc.returncode}")
        result = json.loads(timings.read_text())
        version = (Path(tmp) / "model_version").read_text()
    result["total"] = total
    result["startup_and_rest"] = total - sum(result[s] for s in STAGES)
    result["registered"] = bool(version)
    return result


def main(argv: list[str] | None = None) -> int:
    """Print the figures as a small table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default="normal", choices=config.SCENARIOS)
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="more flow.py flags")
    args = parser.parse_args(argv)
    print(f"benchmarking flow.py {args.scenario} on {config.load_config().data_dir} "
          f"({os.cpu_count()} CPUs)...", flush=True)
    result = bench(args.scenario, args.extra)
    for stage, what in STAGES.items():
        print(f"  {stage:<18} {result[stage]:7.1f} s   {what}")
    print(f"  {'startup_and_rest':<18} {result['startup_and_rest']:7.1f} s   "
          "interpreter start, imports, clean-up")
    verdict = "within" if result["total"] <= TARGET_S else "OVER"
    print(f"  {'total':<18} {result['total']:7.1f} s   {verdict} the {TARGET_S:.0f} s target; "
          f"registered: {result['registered']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
