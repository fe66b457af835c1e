"""GourmetGram training pipeline: data -> train -> export ONNX -> evaluate -> MLflow -> register.

    python flow.py [normal|bad-architecture|oversized|slow] [--version-file PATH]
                   [--head-epochs N ...]

The new model version goes to the version file only if every evaluation test passed; after
a failed evaluation the file is empty, so the Argo workflow skips the image build.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import config
import mlflow
import registry
from config import ENV_NAMES, SCENARIOS, ConfigError, TrainConfig, load_config
from dataset import DataError, check_dataset
from evaluate import plot_confusion
from mlflow.exceptions import MlflowException
from model import TORCH_FILE, ExportError, load_torch_model, parameter_bytes, save_for_serving
from requests.exceptions import RequestException
from trainer import pick_device, train_scenario

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_MLFLOW, EXIT_EVAL_BROKEN = 0, 1, 2, 3, 4

EXIT_CODES = """exit codes:
  0  finished: a new version was registered and written to the version file, OR the
     evaluation failed, nothing was registered and the version file is empty (a normal
     outcome: the workflow skips the build)
  1  unexpected error (a bug, or a crash during training)
  2  bad input: unknown scenario, invalid setting, or a missing or malformed dataset
  3  MLflow unreachable (checked before training) or an MLflow request failed
  4  the evaluation suite could not run at all (pytest usage or internal error)"""


class EvaluationBroken(Exception):
    """pytest could not run the evaluation suite at all."""


@dataclass
class Evaluation:
    """Outcome of one run of the pytest evaluation suite."""

    returncode: int
    passed: int = 0
    failed: int = 0
    total: int = 0
    failures: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when tests ran and every one passed (a skipped gate is not a passed one)."""
        return self.returncode == 0 and self.total > 0 and self.passed == self.total


def parse_junit(path: Path) -> tuple[int, int, int, list[str]]:
    """Count (passed, failed, total, names of failed tests) in a pytest junit-xml report."""
    root = ET.parse(path).getroot()
    total = failed = skipped = 0
    for suite in root.iter("testsuite"):
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    names = [f"{case.get('classname')}::{case.get('name')}" for case in root.iter("testcase")
             if case.find("failure") is not None or case.find("error") is not None]
    return total - failed - skipped, failed, total, names


def suite_command(model_path: Path, data_dir: Path, workdir: Path) -> list[str]:
    """The pytest command that evaluates model_path (ONNX, model.pth beside it) into workdir."""
    return [sys.executable, "-m", "pytest", "-c", str(config.TRAIN_DIR / "pytest.ini"),
            "--rootdir", str(config.TRAIN_DIR), str(config.TRAIN_DIR / "tests"),
            "-v", "--tb=short", f"--junitxml={workdir / 'junit.xml'}",
            f"--model-path={model_path}", f"--data-dir={data_dir}",
            f"--metrics-out={workdir / 'metrics.json'}"]


def run_evaluation(model_path: Path, cfg: TrainConfig, workdir: Path) -> Evaluation:
    """Run train/tests/ against model_path in a fresh Python; stream and keep its output."""
    junit, metrics = workdir / "junit.xml", workdir / "metrics.json"
    cmd = suite_command(model_path, cfg.data_dir, workdir)
    env = {**os.environ, **config.eval_env(cfg)}
    with open(workdir / "pytest.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)
        for line in proc.stdout:
            print(line, end="", flush=True)
            log.write(line)
        proc.wait()
    result = Evaluation(proc.returncode)
    if junit.exists():
        result.passed, result.failed, result.total, result.failures = parse_junit(junit)
    if metrics.exists():
        result.metrics = json.loads(metrics.read_text())
    return result


def log_evaluation(result: Evaluation, workdir: Path) -> None:
    """Log test counts, metrics and report files of an evaluation to the active run."""
    values = {"tests_passed": result.passed, "tests_failed": result.failed,
              "tests_total": result.total}
    for name in ("accuracy", "flip_agreement", "latency_ms", "model_bytes", "max_logit_diff"):
        if name in result.metrics:
            values[name] = result.metrics[name]
    for name, recall in result.metrics.get("recall", {}).items():
        values[f"recall_{name.lower().replace(' ', '_')}"] = recall
    mlflow.log_metrics(values)
    if "confusion" in result.metrics:
        plot_confusion(result.metrics["confusion"], workdir / "confusion_matrix.png")
    for name in ("junit.xml", "pytest.log", "metrics.json", "confusion_matrix.png"):
        if (workdir / name).exists():
            mlflow.log_artifact(str(workdir / name), artifact_path="evaluation")
    mlflow.set_tags({"evaluation": "passed" if result.ok else "failed",
                     "failed_tests": ", ".join(result.failures)[:4000]})


def run_pipeline(scenario: str, cfg: TrainConfig, timings: dict[str, object]) -> str:
    """Run every stage; return the registered version, or '' when evaluation failed.

    timings collects the seconds of each stage, each epoch's stats and the evaluation's
    outcome (for bench.py).
    """
    start = time.perf_counter()
    device = pick_device(cfg.device)  # fails here, before any run, when a GPU was required
    try:
        counts = check_dataset(cfg.data_dir)
    except DataError as err:
        if cfg.dataset != "food11":
            raise
        raise DataError(f"{err}; prepare Food-11 first: python food11_data.py prepare "
                        f"--dest {cfg.data_dir} (in the cluster: workflow prepare-data)") from None
    print(f"[data] {cfg.dataset} at {cfg.data_dir}: {counts}"
          f"{f', using {cfg.subset} per class' if cfg.subset else ''}", flush=True)
    uri = config.tracking_uri()
    registry.check_reachable(uri)
    registry.use_experiment(uri)
    timings["load_data"] = time.perf_counter() - start

    with mlflow.start_run(run_name=f"train-{scenario}") as run, \
            tempfile.TemporaryDirectory(prefix="gourmetgram-") as tmp:
        workdir = Path(tmp)
        print(f"[mlflow] run {run.info.run_id} at {uri}", flush=True)
        start = time.perf_counter()
        mlflow.set_tags({"scenario": scenario, "device": device.type, "dataset": cfg.dataset})
        mlflow.log_params({**dataclasses.asdict(cfg), "scenario": scenario,
                           **{f"images_{k}": v for k, v in counts.items()}})
        epochs: list[dict[str, float]] = []
        timings.update(epochs=epochs, head_epochs=cfg.head_epochs)

        def on_epoch(stats: dict[str, float]) -> None:
            mlflow.log_metrics(stats, step=int(stats["epoch"]))
            epochs.append(stats)

        model = train_scenario(scenario, cfg, on_epoch=on_epoch)
        mlflow.log_params({"pretrained": model.pretrained, "input_size": model.input_size})
        mlflow.log_metric("parameter_bytes", parameter_bytes(model))
        timings["train"] = time.perf_counter() - start

        start = time.perf_counter()
        try:
            model_path = save_for_serving(model, workdir, "candidate")
        except ExportError as err:
            # Nothing servable exists: no evaluation, nothing registered, as after a failure.
            print(f"[export] {err}", flush=True)
            mlflow.set_tags({"evaluation": "failed", "failed_tests": str(err)[:4000]})
            print(f"[register] nothing registered; failed: {err}", flush=True)
            return ""
        # The suite loads its own copies: let go of this one meanwhile, so that an oversized
        # model is in memory as few times as possible (a training node has a few GB).
        del model
        gc.collect()
        print("[evaluate] running the pytest suite in train/tests/ on the ONNX model",
              flush=True)
        result = run_evaluation(model_path, cfg, workdir)
        if result.returncode not in (0, 1):
            raise EvaluationBroken(f"the evaluation suite could not run "
                                   f"(pytest exit {result.returncode}); see its output above")
        timings["evaluate"] = time.perf_counter() - start
        timings.update(tests_passed=result.passed, tests_total=result.total,
                       failed_tests=list(result.failures),
                       accuracy=result.metrics.get("accuracy"))

        start = time.perf_counter()
        log_evaluation(result, workdir)
        info = registry.log_model(load_torch_model(model_path.with_name(TORCH_FILE)), model_path)
        version = ""
        if result.ok:
            version = registry.register(info.model_uri, {"scenario": scenario,
                                                         "dataset": cfg.dataset,
                                                         "run_id": run.info.run_id})
        timings["log_register"] = time.perf_counter() - start
    summary = f"{result.passed}/{result.total} evaluation tests passed"
    if version:
        print(f"[register] {summary}: {config.MODEL_NAME} version {version} "
              f"is now @{config.DEV_ALIAS}", flush=True)
    else:
        print(f"[register] {summary}: nothing registered; failed: "
              f"{', '.join(result.failures) or 'no tests ran'}", flush=True)
    return version


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line: the scenario, the version file and one flag per config setting."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", nargs="?", default="normal", choices=SCENARIOS)
    parser.add_argument("--timings-json", type=Path,
                        help="write stage timings, epochs and test counts here (bench)")
    for f in dataclasses.fields(TrainConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, metavar="VALUE",
                            help=f"default {f.default} (env {ENV_NAMES[f.name]})")
    return parser.parse_args(argv)


def write_version(path: Path, text: str) -> None:
    """Write the version (or '') to the file the workflow reads."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as err:
        raise ConfigError(f"cannot write the version file {path}: {err.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline and turn known failures into one-line errors and exit codes."""
    args = parse_args(argv)
    # a server that dies mid-run fails the run in seconds instead of retrying for minutes
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    timings: dict[str, object] = {}
    try:
        # Empty the version file first, so no stale version survives any failure below.
        write_version(config.version_file_setting(args.version_file), "")
        flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
        cfg = load_config(flags)
        version = run_pipeline(args.scenario, cfg, timings)
        write_version(cfg.version_file, version)
    except (ConfigError, DataError) as err:
        return _fail(EXIT_BAD_INPUT, err)
    except registry.MlflowUnreachable as err:
        return _fail(EXIT_MLFLOW, err)
    except (MlflowException, RequestException) as err:
        return _fail(EXIT_MLFLOW, f"MLflow request failed: {err}")
    except EvaluationBroken as err:
        return _fail(EXIT_EVAL_BROKEN, err)
    if args.timings_json:
        args.timings_json.write_text(json.dumps(timings))
    return EXIT_OK


def _fail(code: int, err: object) -> int:
    """Print one error line (the last line of a multi-line message) and return code."""
    lines = [line for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    print(f"error: {lines[-1]}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
