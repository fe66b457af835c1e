"""Food-11 preparation (train/food11_data.py) and the food11 data set, on a small fake archive.

No machine here can download Food-11, so each test builds an archive in its real layout
(flat training/, validation/, evaluation/ folders of `<class index>_<n>.jpg`) and serves
it over HTTP on loopback; the counts checked are the test's own.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import config
import flow
import food11_data
import pytest
from dataset import SPLITS, check_dataset, make_loader
from food11_data import MARKER, PrepareError, prepare
from mlflow.tracking import MlflowClient
from sample_data import draw_image

from app.food11 import CLASS_NAMES, folder_name

PER_CLASS = {"training": 4, "validation": 2, "evaluation": 2}
COUNTS = {split: n * len(CLASS_NAMES) for split, n in PER_CLASS.items()}
COUNTS_FLAG = ",".join(f"{k}={v}" for k, v in COUNTS.items())


def fake_archive(prefix: str = "", drop: str = "", extra: str = "", cut: int = 0) -> bytes:
    """A zip in Food-11's layout: PER_CLASS images of every class per split, flat folders.

    drop: leave out a split; extra: add a file of this name; cut: lose the last bytes.
    """
    rng, buffer = random.Random(0), io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for split, n in PER_CLASS.items():
            if split == drop:
                continue
            for index in range(len(CLASS_NAMES)):
                for k in range(n):
                    image = io.BytesIO()
                    draw_image(index, rng).save(image, "JPEG", quality=90)
                    archive.writestr(f"{prefix}{split}/{index}_{k}.jpg", image.getvalue())
        if extra:
            archive.writestr(f"{prefix}{extra}", b"\xff\xd8 not really")
    return buffer.getvalue()[: -cut or None]


class ArchiveServer:
    """Serves one archive at /food11.zip on loopback; `truncate` sends only half the body."""

    def __init__(self, body: bytes, truncate: bool = False) -> None:
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests += 1
                if self.path != "/food11.zip":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if truncate else body)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/food11.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator:
    """Start ArchiveServers for a test; stop them after it."""
    started: list[ArchiveServer] = []

    def start(body: bytes, truncate: bool = False) -> ArchiveServer:
        started.append(ArchiveServer(body, truncate))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.mark.parametrize("prefix", ["", "food-11/"])
def test_prepare_lays_out_image_folders_once(serve, tmp_path, prefix):
    """Download, check, rearrange: every photo in its class folder; a rerun does nothing."""
    body = fake_archive(prefix)
    server = serve(body)
    dest = tmp_path / "volume" / "food11"
    assert prepare(server.url, dest, COUNTS) is True
    assert check_dataset(dest) == COUNTS
    assert sorted(p.name for p in dest.parent.iterdir()) == ["food11"]  # no temp files left
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        for split in SPLITS:
            for index, name in enumerate(CLASS_NAMES):
                folder = dest / split / folder_name(name)
                files = sorted(p.name for p in folder.iterdir())
                assert files == [f"{index}_{k}.jpg" for k in range(PER_CLASS[split])]
                assert (folder / files[0]).read_bytes() == archive.read(
                    f"{prefix}{split}/{files[0]}")
    # The class index comes from the file name, in CLASS_NAMES order.
    loader = make_loader(dest, "training", None, 4)
    assert {target for _, target in loader.dataset.samples} == set(range(len(CLASS_NAMES)))
    assert (dest / MARKER).is_file()
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    assert prepare(server.url, dest, COUNTS) is False
    assert server.requests == 1  # the data was there: no second download
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == before


BAD_ARCHIVES = {
    "missing-split": ({"drop": "evaluation"}, False, "no evaluation/ folder"),
    "unknown-class": ({"extra": "training/11_0.jpg"}, False, "unknown class index 11"),
    "truncated": ({}, True, "truncated: got"),
    "corrupt": ({"cut": 100}, False, "not a complete zip archive"),
}


@pytest.mark.parametrize("case", BAD_ARCHIVES)
def test_bad_archive_fails_clearly_and_leaves_nothing(serve, tmp_path, case):
    """A missing split, an unknown class index, a cut download: an error and no folder."""
    options, truncate, message = BAD_ARCHIVES[case]
    server = serve(fake_archive(**options), truncate=truncate)
    dest = tmp_path / "volume" / "food11"
    with pytest.raises(PrepareError, match=message):
        prepare(server.url, dest, COUNTS)
    assert list(dest.parent.iterdir()) == []  # neither dest nor a half-written temp folder


def test_wrong_counts_and_a_foreign_folder_are_refused(serve, tmp_path):
    """A count that differs from the expected one names the split; so does a stray folder."""
    server = serve(fake_archive())
    dest = tmp_path / "food11"
    with pytest.raises(PrepareError, match="validation/ holds 22 images, expected 23"):
        prepare(server.url, dest, {**COUNTS, "validation": 23})
    assert not dest.exists()
    with pytest.raises(PrepareError, match=r"training/ holds 44 images, expected 9866"):
        prepare(server.url, dest)  # the real archive's counts are the default
    dest.mkdir()  # an empty folder is replaced...
    assert prepare(server.url, dest, COUNTS) is True and check_dataset(dest) == COUNTS
    other = tmp_path / "other"
    (other / "training").mkdir(parents=True)  # ...one with something in it is not
    with pytest.raises(PrepareError, match="was not completed by prepare"):
        prepare(server.url, other, COUNTS)
    assert server.requests == 3  # refused before downloading anything


def run(repo: Path, *args: str, env: dict[str, str] | None = None):
    """Run a train/ script as the workflow does: a fresh Python, no TRAIN_/EVAL_ settings."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("EVAL_", "TRAIN_")) and k != "FOOD11_DATA_DIR"}
    clean.update(PYTHONPATH=f"{repo}:{repo / 'train'}", MPLBACKEND="Agg", **(env or {}))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=clean,
                          timeout=600, cwd=repo / "train")


def test_food11_path_end_to_end(repo, serve, mlflow_server, tmp_path):
    """The real commands: prepare from HTTP, then train -> evaluate -> register on food11."""
    server = serve(fake_archive())
    dest = tmp_path / "food11"
    proc = run(repo, "food11_data.py", "prepare", "--url", server.url, "--dest", str(dest),
               "--expect-counts", COUNTS_FLAG)
    assert proc.returncode == 0, proc.stderr
    assert "is ready" in proc.stdout
    vfile = tmp_path / "model_version"
    # food11 semantics (its data dir, schedule, gate), but small: ImageNet weights cannot be
    # downloaded here, and 64 px keeps it quick. The thresholds are the test's own.
    proc = run(repo, "flow.py", "normal", "--dataset", "food11", "--subset", "3",
               "--weights", "none", "--image-size", "64", "--head-epochs", "2",
               "--finetune-epochs", "0", "--min-accuracy", "0", "--min-class-recall", "0",
               "--min-flip-agreement", "0", "--version-file", str(vfile),
               env={"MLFLOW_TRACKING_URI": mlflow_server.uri, "FOOD11_DATA_DIR": str(dest)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    version = vfile.read_text()
    assert version
    client = MlflowClient(mlflow_server.uri)
    mv = client.get_model_version(config.MODEL_NAME, version)
    assert mv.tags["dataset"] == "food11"
    run_data = client.get_run(mv.run_id).data
    assert run_data.params["dataset"] == "food11" and run_data.params["subset"] == "3"
    assert run_data.params["input_size"] == "64" and run_data.tags["dataset"] == "food11"
    assert run_data.params["finetune_lr"] == "0.0001"  # the food11 subset schedule
    assert run_data.metrics["tests_failed"] == 0
    assert run_data.metrics["images_per_second"] > 0 and run_data.metrics["eta_seconds"] == 0
    assert len(client.get_metric_history(mv.run_id, "eta_seconds")) == 2
    assert "33 training and 22 validation images (3 per class)" in proc.stdout
    assert "epoch 1/2, about" in proc.stdout and "images/s" in proc.stdout


@pytest.mark.parametrize("case", BAD_ARCHIVES)
def test_bad_archive_registers_nothing(repo, serve, mlflow_server, tmp_path, monkeypatch, case):
    """After a failed prepare, the prepare command exits 2 and training refuses to start."""
    options, truncate, message = BAD_ARCHIVES[case]
    server = serve(fake_archive(**options), truncate=truncate)
    dest = tmp_path / "food11"
    if case == "truncated":  # the command line once, the rest in-process (faster)
        proc = run(repo, "food11_data.py", "prepare", "--url", server.url, "--dest",
                   str(dest), "--expect-counts", COUNTS_FLAG)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    else:
        assert food11_data.main(["prepare", "--url", server.url, "--dest", str(dest),
                                 "--expect-counts", COUNTS_FLAG]) == 2
    client = MlflowClient(mlflow_server.uri)
    before = {mv.version for mv in client.search_model_versions(f"name='{config.MODEL_NAME}'")}
    for name in [*config.ENV_NAMES.values()]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("FOOD11_DATA_DIR", str(dest))
    code = flow.main(["--dataset", "food11", "--weights", "none",
                      "--version-file", str(tmp_path / "v")])
    assert code == flow.EXIT_BAD_INPUT
    after = {mv.version for mv in client.search_model_versions(f"name='{config.MODEL_NAME}'")}
    assert after == before and (tmp_path / "v").read_text() == ""


# ---- the dataset setting ----------------------------------------------------------------

def test_the_dataset_decides_size_weights_schedule_and_gate():
    """food11 means 224 px and ImageNet weights; explicit settings still win."""
    sample = config.load_config(env={})
    assert (sample.dataset, sample.image_size, sample.weights) == ("sample", 64, "auto")
    # The synthetic set keeps its current gate: TrainConfig's own defaults.
    assert config.SCHEDULES["sample", "subset"] == config.SCHEDULES["sample", "full"] == {}
    assert sample == config.TrainConfig()
    full = config.load_config({"dataset": "food11"}, env={})
    assert (full.image_size, full.weights, full.subset) == (224, "imagenet", 0)
    assert full.data_dir == config.REPO_ROOT / "data" / "food11"
    cpu = config.load_config({"dataset": "food11", "subset": "50"}, env={})
    assert cpu.min_accuracy < full.min_accuracy and cpu.finetune_epochs < full.finetune_epochs
    assert 0 < cpu.min_accuracy < 1 and cpu.min_accuracy > 1 / len(CLASS_NAMES)  # above chance
    env = {"TRAIN_DATASET": "food11", "EVAL_MIN_ACCURACY": "0.3", "FOOD11_DATA_DIR": "/d"}
    mixed = config.load_config({"image_size": "96"}, env=env)
    assert (mixed.min_accuracy, mixed.image_size, str(mixed.data_dir)) == (0.3, 96, "/d")
    assert mixed.min_class_recall == full.min_class_recall
    handed = config.eval_env(cpu)  # the evaluation suite sees the same data set and gate
    assert handed["TRAIN_DATASET"] == "food11" and handed["TRAIN_SUBSET"] == "50"
    assert config.load_config(env=handed).min_accuracy == cpu.min_accuracy
    for flags, message in (({"dataset": "food101"}, "dataset must be one of"),
                           ({"subset": "-1"}, "subset must not be negative")):
        with pytest.raises(config.ConfigError, match=message):
            config.load_config(flags, env={})


def test_subset_keeps_the_first_images_of_each_class(sample_data):
    """subset=N: at most N images per class, the first in file-name order."""
    full = make_loader(sample_data, "training", None, 8).dataset
    part = make_loader(sample_data, "training", None, 8, subset=3).dataset
    assert len(part) == 3 * len(CLASS_NAMES) and part.targets == [s[1] for s in part.samples]
    for index in range(len(CLASS_NAMES)):
        first = [p for p, t in full.samples if t == index][:3]
        assert [p for p, t in part.samples if t == index] == first


def test_duration_reads_like_a_person_would_say_it():
    from trainer import duration

    assert [duration(s) for s in (0.4, 59, 61, 3599, 7380)] == [
        "0 s", "59 s", "1 min 1 s", "59 min 59 s", "2 h 3 min"]


def test_a_long_pass_reports_its_progress(capsys, monkeypatch):
    """Inside an epoch: batch count, images/s and the time left, for `argo logs`."""
    import torch
    import trainer
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    monkeypatch.setattr(trainer, "PROGRESS_EVERY_S", 0.0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, len(CLASS_NAMES)))
    data = TensorDataset(torch.randn(40, 3, 2, 2), torch.randint(0, len(CLASS_NAMES), (40,)))
    trainer._run_epoch(model, DataLoader(data, batch_size=10), torch.device("cpu"),
                       label="epoch 1 training")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        f"  epoch 1 training: batch {b}/4" for b in (1, 2, 3)]  # not after the last batch
    assert all("images/s, about" in line and "left in this pass" in line for line in lines)
