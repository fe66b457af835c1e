"""train/flow.py end to end, as subprocesses, against a real MLflow server on loopback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import config
import pytest
import torch
from mlflow.tracking import MlflowClient

from app.localserver import free_port

MODEL, ALIAS = config.MODEL_NAME, config.DEV_ALIAS
# One head epoch and no quality bar: for tests about plumbing, not accuracy.
QUICK = ["--finetune-epochs", "0", "--min-accuracy", "0", "--min-class-recall", "0",
         "--min-flip-agreement", "0"]


def run_flow(repo: Path, data: Path, uri: str, version_file: Path, *args: str):
    """Run `python train/flow.py ARGS` the way the workflow does, with a clean environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVAL_", "TRAIN_"))}
    env.update(PYTHONPATH=f"{repo}:{repo / 'train'}", FOOD11_DATA_DIR=str(data),
               MLFLOW_TRACKING_URI=uri, TRAIN_WEIGHTS="none", MPLBACKEND="Agg")
    cmd = [sys.executable, str(repo / "train" / "flow.py"), *args,
           "--version-file", str(version_file)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=repo)


def run_id(stdout: str) -> str:
    """The MLflow run id the flow prints."""
    return re.search(r"\[mlflow\] run (\w+)", stdout).group(1)


def versions(client: MlflowClient) -> set[str]:
    """Every registered version of the model."""
    return {mv.version for mv in client.search_model_versions(f"name='{MODEL}'")}


def test_normal_runs_register_versions_with_alias_metrics_and_artifacts(
    repo, sample_data, fresh_mlflow, tmp_path
):
    """Two passing runs on an empty registry: versions 1 and 2, @development on 2, full logs."""
    client = MlflowClient(fresh_mlflow.uri)
    for expected, epochs in (("1", "1"), ("2", "0")):
        vfile = tmp_path / f"v{expected}"
        proc = run_flow(repo, sample_data, fresh_mlflow.uri, vfile, "normal", *QUICK,
                        "--finetune-epochs", epochs)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert vfile.read_text() == expected
        mv = client.get_model_version_by_alias(MODEL, ALIAS)
        assert mv.version == expected and mv.tags["scenario"] == "normal"
        if expected == "1":
            first_run, first_out = client.get_run(run_id(proc.stdout)), proc.stdout
            assert mv.run_id == first_run.info.run_id
    assert versions(client) == {"1", "2"}
    assert client.get_registered_model(MODEL).aliases == {ALIAS: "2"}

    metrics, run = first_run.data.metrics, first_run.info.run_id
    assert metrics["tests_failed"] == 0 and metrics["tests_passed"] == metrics["tests_total"] >= 9
    assert 0 <= metrics["accuracy"] <= 1 and metrics["recall_noodles-pasta"] >= 0
    assert len(client.get_metric_history(run, "val_accuracy")) == 2  # one point per epoch
    assert first_run.data.tags["evaluation"] == "passed"
    assert first_run.data.params["scenario"] == "normal"
    files = {f.path for f in client.list_artifacts(run, "evaluation")}
    assert {"evaluation/confusion_matrix.png", "evaluation/junit.xml"} <= files
    assert "9 passed" in first_out and "epoch  2 [finetune]" in first_out


def test_failed_evaluation_registers_nothing_and_empties_the_version_file(
    repo, sample_data, mlflow_server, tmp_path
):
    """An accuracy bar above reach: exit 0, empty version file, the run shows what failed."""
    vfile = tmp_path / "model_version"
    vfile.write_text("99")  # a stale number must not survive
    client = MlflowClient(mlflow_server.uri)
    before = versions(client)
    proc = run_flow(repo, sample_data, mlflow_server.uri, vfile, *QUICK, "--min-accuracy", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert vfile.read_text() == ""
    assert versions(client) == before
    run = client.get_run(run_id(proc.stdout))
    assert run.data.metrics["tests_failed"] >= 1
    assert run.data.tags["evaluation"] == "failed"
    assert "test_accuracy_reaches_threshold" in run.data.tags["failed_tests"]
    assert "nothing registered" in proc.stdout


def test_oversized_run_registers_a_model_heavier_than_the_serving_limit(
    repo, sample_data, fresh_mlflow, tmp_path
):
    """The oversized flow passes offline evaluation; its weights outgrow the pod's memory."""
    vfile = tmp_path / "model_version"
    proc = run_flow(repo, sample_data, fresh_mlflow.uri, vfile, "oversized", *QUICK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(fresh_mlflow.uri)
    assert client.get_model_version_by_alias(MODEL, ALIAS).version == vfile.read_text() == "1"
    run = client.get_run(run_id(proc.stdout))
    limit = config.parse_quantity(config.SERVING_MEMORY_LIMIT)
    assert run.data.metrics["parameter_bytes"] >= config.OVERSIZE_FACTOR * limit
    assert run.data.metrics["model_bytes"] > limit
    assert run.data.metrics["tests_failed"] == 0


def test_slow_run_registers_a_model_that_passes_every_offline_gate(
    repo, sample_data, mlflow_server, tmp_path
):
    """The slow flow passes offline evaluation, its real latency budget included: registered."""
    from model import SLOW_CHANNELS, build_model, parameter_bytes

    vfile = tmp_path / "model_version"
    client = MlflowClient(mlflow_server.uri)
    before = versions(client)
    # 5 images per class and split: the same gates, a third less time than the whole set.
    proc = run_flow(repo, sample_data, mlflow_server.uri, vfile, "slow", *QUICK, "--subset", "5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert vfile.read_text() not in ("", *before) and versions(client) - before == {
        vfile.read_text()}
    mv = client.get_model_version_by_alias(MODEL, ALIAS)
    assert mv.version == vfile.read_text() and mv.tags["scenario"] == "slow"
    run = client.get_run(run_id(proc.stdout))
    metrics = run.data.metrics
    assert metrics["tests_failed"] == 0 and metrics["tests_passed"] == metrics["tests_total"]
    assert run.data.tags["evaluation"] == "passed"
    assert "test_single_image_cpu_latency PASSED" in proc.stdout, proc.stdout[-3000:]
    assert 0 < metrics["latency_ms"] <= config.TrainConfig().latency_budget_ms
    # The identity layers' weights: the registered model is the slowed one.
    extra = config.SLOW_EXTRA_LAYERS * SLOW_CHANNELS * SLOW_CHANNELS * 3 * 3 * 4
    assert metrics["parameter_bytes"] == parameter_bytes(build_model("normal")) + extra


def test_unreachable_mlflow_fails_fast_with_one_line(repo, sample_data, tmp_path):
    """A closed port: exit 3, a single error line, no training, empty version file."""
    vfile = tmp_path / "model_version"
    uri = f"http://127.0.0.1:{free_port()}"
    proc = run_flow(repo, sample_data, uri, vfile, *QUICK)
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and uri in lines[0]
    assert "epoch" not in proc.stdout and vfile.read_text() == ""


@pytest.mark.parametrize("damage", ["missing", "no-class-folder", "corrupt-image"])
def test_bad_dataset_exits_2_naming_the_path(repo, sample_data, mlflow_server, tmp_path, damage):
    """Missing data, a missing class folder or an unreadable image: exit 2 and the path."""
    data = tmp_path / "data"
    if damage == "missing":
        culprit = data
    else:
        shutil.copytree(sample_data, data)
        culprit = data / "training" / "Rice"
        if damage == "no-class-folder":
            shutil.rmtree(culprit)
        else:
            culprit = culprit / "0003.jpg"
            culprit.write_bytes(b"\xff\xd8 truncated")
    client = MlflowClient(mlflow_server.uri)
    before = versions(client)
    proc = run_flow(repo, data, mlflow_server.uri, tmp_path / "v", *QUICK)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and str(culprit) in lines[-1]
    assert versions(client) == before


def test_bad_setting_and_unknown_scenario_exit_2(repo, sample_data, tmp_path):
    """Invalid input is refused before anything runs."""
    uri = f"http://127.0.0.1:{free_port()}"  # never contacted
    stale = tmp_path / "v"
    stale.write_text("7")  # left by an earlier run: the workflow must not build it again
    proc = run_flow(repo, sample_data, uri, stale, "--min-accuracy", "2")
    assert proc.returncode == 2 and "min_accuracy must be between 0 and 1" in proc.stderr
    assert stale.read_text() == ""
    proc = run_flow(repo, sample_data, uri, tmp_path / "v", "tiny")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


class Spectral(torch.nn.Module):
    """A model that pickles but has no ONNX form (no FFT operator at opset 17)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Eleven numbers per image from its spectrum."""
        return torch.fft.fft(x).real.mean((2, 3)).repeat(1, 4)[:, :11]


def test_a_failed_onnx_export_registers_nothing(sample_data, mlflow_server, monkeypatch, tmp_path):
    """A model ONNX cannot express: the run says why, nothing is evaluated or registered."""
    import flow

    from app.food11 import CLASS_NAMES

    def train_scenario(scenario, cfg, on_epoch=None):
        model = Spectral()
        model.class_names, model.input_size, model.pretrained = list(CLASS_NAMES), 16, False
        return model

    monkeypatch.setattr(flow, "train_scenario", train_scenario)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    client = MlflowClient(mlflow_server.uri)
    before = versions(client)
    cfg = config.load_config({"data_dir": str(sample_data)}, env={})
    assert flow.run_pipeline("normal", cfg, {}) == ""
    assert versions(client) == before
    (run,) = client.search_runs([client.get_experiment_by_name(config.EXPERIMENT_NAME)
                                 .experiment_id], order_by=["start_time DESC"], max_results=1)
    assert run.data.tags["evaluation"] == "failed"
    assert "ONNX export failed" in run.data.tags["failed_tests"]
    assert "tests_total" not in run.data.metrics  # the suite never ran
