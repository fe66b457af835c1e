"""The model evaluation suite (train/tests/) passes good models and fails broken ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import torch
from dataset import Food11Folder
from flow import parse_junit, suite_command
from model import TORCH_FILE, load_torch_model, save_for_serving
from transforms import eval_transform

from app.food11 import CLASS_NAMES, folder_name
from tests.count_scoring import digest


def run_suite(model_path: Path, data: Path, out: Path, *extra: str, **env: str):
    """Run the evaluation suite the way flow.py does; return (process, junit counts, metrics).

    extra: more pytest arguments; env: more environment variables.
    """
    out.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EVAL_", "TRAIN_"))}
    proc = subprocess.run([*suite_command(model_path, data, out), *extra], capture_output=True,
                          text=True, env={**base, **env}, timeout=300)
    junit, metrics = out / "junit.xml", out / "metrics.json"
    report = parse_junit(junit) if junit.exists() else None
    values = json.loads(metrics.read_text()) if metrics.exists() else {}
    return proc, report, values


def test_trained_normal_model_passes_with_default_thresholds(trained_models, sample_data, tmp_path):
    """The real trainer's normal model clears every default threshold on held-out data."""
    proc, report, metrics = run_suite(trained_models["normal"], sample_data, tmp_path / "out")
    assert proc.returncode == 0, proc.stdout[-3000:]
    passed, failed, total, _ = report
    assert failed == 0 and passed == total >= 9
    assert metrics["accuracy"] >= 0.75
    assert 0 <= metrics["max_logit_diff"] <= 1e-3
    assert list(metrics["recall"]) == [folder_name(n) for n in CLASS_NAMES]
    assert sum(map(sum, metrics["confusion"])) == 110
    assert metrics["latency_ms"] > 0 and metrics["model_bytes"] > 1_000_000


def test_the_suite_scores_each_image_and_its_mirror_once(
    repo, trained_models, sample_data, tmp_path
):
    """Every test reads one shared scoring: each image, and its mirror image, goes in once."""
    counts_file = tmp_path / "counts.json"
    proc, report, _ = run_suite(trained_models["normal"], sample_data, tmp_path / "out",
                                "-p", "tests.count_scoring", COUNT_SCORING_OUT=str(counts_file),
                                PYTHONPATH=f"{repo}:{repo / 'train'}")
    assert proc.returncode == 0 and report[1] == 0, proc.stdout[-3000:]
    counts = json.loads(counts_file.read_text())
    split = Food11Folder(sample_data / "evaluation", transform=eval_transform(64))
    for index in range(len(split)):
        image = split[index][0].numpy()
        assert counts.get(digest(image)) == 1, split.samples[index]
        assert counts.get(digest(image[..., ::-1])) == 1, split.samples[index]


def test_a_model_that_ignores_the_image_fails_accuracy_and_recall(trained_models, sample_data,
                                                                  tmp_path):
    """One answer for every photo: the shared scores fail the two quality gates it breaks."""
    model = load_torch_model(trained_models["normal"].with_name(TORCH_FILE))
    with torch.no_grad():
        model.classifier[-1].weight.zero_()
        model.classifier[-1].bias.copy_(torch.eye(len(CLASS_NAMES))[0] * 5)
    path = save_for_serving(model, tmp_path / "constant", "constant")
    proc, report, metrics = run_suite(path, sample_data, tmp_path / "out")
    assert proc.returncode == 1
    assert {n.split("::")[1] for n in report[3]} == {
        "test_accuracy_reaches_threshold", "test_every_class_reaches_recall_floor"}
    assert metrics["accuracy"] == 1 / len(CLASS_NAMES) and metrics["flip_agreement"] == 1.0


def copy_with_metadata(onnx_path: Path, out: Path, **metadata: str) -> Path:
    """Copy model.onnx into out/ with some metadata changed, and model.pth beside it."""
    out.mkdir(parents=True, exist_ok=True)
    proto = onnx.load(str(onnx_path))
    props = {p.key: p.value for p in proto.metadata_props} | metadata
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(out / "model.onnx"))
    (out / TORCH_FILE).write_bytes(onnx_path.with_name(TORCH_FILE).read_bytes())
    return out / "model.onnx"


def test_bad_architecture_model_passes_offline(trained_models, sample_data, tmp_path):
    """Its batch-standardising head works in batches: every offline check passes."""
    proc, report, metrics = run_suite(trained_models["bad-architecture"], sample_data,
                                      tmp_path / "out")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert report[1] == 0 and metrics["accuracy"] >= 0.75


def test_wrong_class_order_and_strict_thresholds_fail(trained_models, sample_data, tmp_path):
    """A swapped class list breaks the contract test; an unreachable budget fails its test."""
    swapped = json.dumps(list(reversed(CLASS_NAMES)))
    path = copy_with_metadata(trained_models["normal"], tmp_path / "swapped", class_names=swapped)
    proc, report, _ = run_suite(path, sample_data, tmp_path / "out",
                                EVAL_LATENCY_BUDGET_MS="0.001", EVAL_MAX_MODEL_BYTES="1000")
    assert proc.returncode == 1
    passed, failed, total, names = report
    assert failed == 3 and passed == total - 3
    assert {n.split("::")[1] for n in names} == {
        "test_class_names_follow_serving_order", "test_single_image_cpu_latency",
        "test_model_file_within_storage_budget"}


def test_an_onnx_file_that_disagrees_with_pytorch_fails_parity_only(
    trained_models, sample_data, tmp_path
):
    """model.pth nudged by 0.01 on one logit: accuracy unchanged, the parity test fails."""
    path = copy_with_metadata(trained_models["normal"], tmp_path / "nudged")
    model = load_torch_model(path.with_name(TORCH_FILE))
    with torch.no_grad():
        model.classifier[-1].bias[3] += 0.01
    # A new file renamed over the old one: the loaded weights are still mapped from the old
    # file (load_torch_model uses mmap), and overwriting it in place would pull them away.
    nudged = path.with_name("nudged.pth")
    torch.save(model, nudged)
    nudged.replace(path.with_name(TORCH_FILE))
    proc, report, metrics = run_suite(path, sample_data, tmp_path / "out")
    assert proc.returncode == 1
    assert [n.split("::")[1] for n in report[3]] == ["test_onnx_logits_match_pytorch"]
    assert metrics["max_logit_diff"] > 0.009


def test_missing_metadata_fails_the_contract(trained_models, sample_data, tmp_path):
    """No input_size in the metadata: the contract tests fail, nothing else can pass for it."""
    proto = onnx.load(str(trained_models["normal"]))
    keep = [p for p in proto.metadata_props if p.key != "input_size"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    (tmp_path / "m").mkdir()
    onnx.save(proto, str(tmp_path / "m" / "model.onnx"))
    proc, report, _ = run_suite(tmp_path / "m" / "model.onnx", sample_data, tmp_path / "out")
    assert proc.returncode == 1
    assert "test_input_size_is_declared_and_accepted" in {n.split("::")[1] for n in report[3]}


def test_suite_refuses_to_run_without_a_model(repo, sample_data, tmp_path):
    """No --model-path and no MODEL_PATH: a usage error (pytest exit 4), not a pass."""
    env = {k: v for k, v in os.environ.items() if k != "MODEL_PATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(repo / "train" / "pytest.ini"),
         "--rootdir", str(repo / "train"), str(repo / "train" / "tests")],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 4
    assert "--model-path" in proc.stderr
