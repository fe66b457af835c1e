"""A model's whole trip, for real: training, staging, approval, canary, production, rollback.

Each step runs the same ops.py command the Argo workflow runs, against a real MLflow server,
and the app (gunicorn on loopback) serves the model that `ops.py download` fetched. Only the
cluster part (image build, Argo CD) is left out; tests/test_ops_rollout.py covers deploy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import ops
import pytest
import registry
from config import DEV_ALIAS, MODEL_NAME
from model import TORCH_FILE, load_torch_model

from app.client import Client
from app.localserver import LocalServer
from tests.mlflow_server import MlflowServer

REPO = Path(__file__).resolve().parent.parent


def run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command from the repository root and capture its output."""
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


class Ops:
    """`python ops.py ...` in this process (same code path, no torch import per call)."""

    def __init__(self, capsys: pytest.CaptureFixture) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = ops.main(list(args))
        out, err = self.capsys.readouterr()
        return code, out.strip(), err

    def ok(self, *args: str) -> str:
        """Run a command that must succeed; return what it printed."""
        code, out, err = self(*args)
        assert code == ops.OK, f"ops.py {' '.join(args)} exited {code}: {err}"
        return out


def served_version(folder: Path, logs: Path) -> str:
    """Start the app on folder/model.onnx + versions.txt and ask it /version."""
    log = logs / f"gunicorn-{folder.name}.log"
    with LocalServer(folder / "model.onnx", folder / "versions.txt", log, WORKERS="1") as app:
        reply = Client(app.url).get("/version")
        assert reply.status == 200, reply.body
        return str(reply.json()["model_version"])


def staging_suite(folder: Path, version: str, logs: Path) -> subprocess.CompletedProcess:
    """The app serving folder's model, checked by the staging suite as test-staging does."""
    log = logs / f"gunicorn-suite-{version}.log"
    with LocalServer(folder / "model.onnx", folder / "versions.txt", log, WORKERS="1") as app:
        # A short load phase with a loose latency budget: speed is `make bench-serve`'s job.
        return run(sys.executable, "-m", "app.staging_tests", "--url", app.url,
                   "--expect-version", version, "--requests", "40", "--p95-ms", "10000")


@pytest.fixture
def registry_with_two_versions(
    fresh_mlflow: MlflowServer, sample_data: Path, trained_models: dict[str, Path],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> tuple[str, str]:
    """Version 1: `flow.py normal`, trained for real. Version 2: the bad-architecture model."""
    env = {"MLFLOW_TRACKING_URI": fresh_mlflow.uri, "FOOD11_DATA_DIR": str(sample_data),
           "MODEL_VERSION_FILE": str(tmp_path / "model_version"), "TRAIN_WEIGHTS": "none",
           # One short epoch, and an evaluation bar it can clear: this test is about where a
           # version goes after training, not how good it is (train/tests/ judge that).
           "TRAIN_HEAD_EPOCHS": "0", "TRAIN_FINETUNE_EPOCHS": "1",
           "EVAL_MIN_ACCURACY": "0", "EVAL_MIN_CLASS_RECALL": "0",
           "EVAL_MIN_FLIP_AGREEMENT": "0", "EVAL_LATENCY_BUDGET_MS": "10000"}
    trained = run(sys.executable, "train/flow.py", "normal", env=env)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    normal = (tmp_path / "model_version").read_text()
    assert normal == "1", trained.stdout
    # The bad-architecture model of the session, registered the way flow.py registers one
    # (its own, batched, evaluation passes; see CONTRIBUTING.md).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_mlflow.uri)
    registry.use_experiment(fresh_mlflow.uri)
    with mlflow.start_run(run_name="train-bad-architecture"):
        onnx_path = trained_models["bad-architecture"]
        info = registry.log_model(load_torch_model(onnx_path.with_name(TORCH_FILE)), onnx_path)
        bad = registry.register(info.model_uri, {"scenario": "bad-architecture"})
    return normal, bad


def test_a_model_travels_from_training_to_production_and_back(
    registry_with_two_versions: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture,
) -> None:
    good, bad = registry_with_two_versions
    op = Ops(capsys)
    logs = tmp_path / "logs"
    logs.mkdir()

    def fetch(label: str, *which: str) -> Path:
        out = tmp_path / label
        op.ok("download", *which, "--out", str(out))
        return out

    def aliases() -> dict[str, str]:
        return dict(ops.client().get_registered_model(MODEL_NAME).aliases)

    # development -> staging: build-container-image downloads the model; deploy moves the alias.
    assert aliases()[DEV_ALIAS] == bad  # training moved it to the newest version
    staging = fetch("staging", "--version", good)
    assert (staging / "versions.txt").read_text().strip() == good
    assert served_version(staging, logs) == good
    op.ok("record-deploy", "--env", "staging", "--version", good)

    # staging -> approved: the staging suite passes, test-staging approves.
    suite = staging_suite(staging, good, logs)
    assert suite.returncode == 0, suite.stdout + suite.stderr
    op.ok("approve", "--version", good)

    # staging -> canary -> production, each served from what its alias names.
    for source, target in (("staging", "canary"), ("canary", "production")):
        op.ok("check-promotion", "--source", source, "--target", target, "--version", good)
        op.ok("record-deploy", "--env", target, "--version", good)
        assert op.ok("current", "--env", target) == good
        assert served_version(fetch(target, "--alias", target), logs) == good

    # A version that is not in the source environment is refused.
    code, _, err = op("check-promotion", "--source", "canary", "--target", "production",
                      "--version", bad)
    assert code == ops.REFUSED and f"version {bad} is not in canary" in err

    # The bad-architecture version reaches staging, starts, and is stopped by the suite.
    broken = fetch("bad", "--version", bad)
    suite = staging_suite(broken, bad, logs)
    op.ok("record-deploy", "--env", "staging", "--version", bad)
    assert suite.returncode != 0, suite.stdout
    assert "FAIL" in suite.stdout
    assert "approved" not in ops.client().get_model_version(MODEL_NAME, bad).tags
    code, _, err = op("check-promotion", "--source", "staging", "--target", "canary",
                      "--version", bad)
    assert code == ops.REFUSED and "has not passed the staging tests" in err
    assert {k: v for k, v in aliases().items() if k != DEV_ALIAS} == {
        "staging": bad, "canary": good, "production": good}

    # Rolling staging back returns it, and its alias, to the version before.
    assert op.ok("rollback-target", "--env", "staging") == good
    op.ok("record-rollback", "--env", "staging", "--version", good)
    assert op.ok("current", "--env", "staging") == good
    assert op.ok("history", "--env", "staging") == good
    assert served_version(fetch("staging-again", "--alias", "staging"), logs) == good
    code, _, err = op("rollback-target", "--env", "staging")
    assert code == ops.REFUSED and "nothing to roll back to" in err
