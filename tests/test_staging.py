"""The staging suite against the app under real gunicorn on loopback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.client import Client, run_load
from app.localserver import REPO, LocalServer, free_port
from app.staging_tests import Suite, parse_args
from tests.test_app import metric_value, png_claiming, sample_bytes

VERSION = "7"
LOAD = ["--requests", "40", "--concurrency", "4"]


def serve(model: Path, tmp_path: Path) -> LocalServer:
    """A two-worker gunicorn serving `model` as version VERSION (not yet started).

    HOME cannot be created, even by root: the image's user has no home (app/Dockerfile).
    """
    (tmp_path / "versions.txt").write_text(f"{VERSION}\n")
    (tmp_path / "a-file").write_text("")
    return LocalServer(model, tmp_path / "versions.txt", tmp_path / "gunicorn.log", WORKERS="2",
                       HOME=str(tmp_path / "a-file" / "home"))


@pytest.fixture(scope="module")
def normal_app(trained_models, tmp_path_factory) -> Iterator[LocalServer]:
    """gunicorn serving the trained normal model."""
    with serve(trained_models["normal"], tmp_path_factory.mktemp("normal")) as server:
        yield server


@pytest.fixture(scope="module")
def bad_app(trained_models, tmp_path_factory) -> Iterator[LocalServer]:
    """gunicorn serving the bad-architecture model."""
    with serve(trained_models["bad-architecture"], tmp_path_factory.mktemp("bad")) as server:
        yield server


def staging(url: str, *args: str) -> subprocess.CompletedProcess:
    """Run `python -m app.staging_tests` as the workflow does."""
    return subprocess.run(
        [sys.executable, "-m", "app.staging_tests", "--url", url, *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


def verdicts(output: str) -> dict[str, str]:
    """Map each check's name to PASS or FAIL from the suite's report."""
    return {m[1].strip(): m[0] for m in re.findall(r"^(PASS|FAIL)  (.{28})", output, re.M)}


def worker_boots(server: LocalServer) -> int:
    """How many workers gunicorn has started so far (a crash makes it start another)."""
    return server.log().count("Booting worker")


def test_staging_suite_passes_for_the_normal_model(normal_app: LocalServer) -> None:
    run = staging(normal_app.url, "--expect-version", VERSION, *LOAD)
    assert run.returncode == 0, run.stdout + run.stderr
    checks = verdicts(run.stdout)
    assert set(checks.values()) == {"PASS"}
    assert {"ready", "version", "test endpoint", "load", "reject empty file"} <= set(checks)
    assert sum(name.startswith("predict ") for name in checks) == 11
    assert re.search(r"load: 40/40 ok, 0 errors, .* req/s, p50 .* p95 .* p99", run.stdout)
    assert "RESULT: PASS" in run.stdout
    assert "[ERROR]" not in normal_app.log()  # e.g. gunicorn's control socket under $HOME


def served_per_worker(server: LocalServer, dest: Path) -> list[float]:
    """POST /predict 200s counted by each worker, read from its own multiprocess metric file."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    (folder,) = re.findall(r"metrics in (\S+)", server.log())
    counts = []
    for i, db in enumerate(sorted(Path(folder).glob("counter_*.db"))):
        alone = dest / str(i)  # a folder holding just this worker's file
        alone.mkdir()
        shutil.copy(db, alone)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        counts.append(registry.get_sample_value(
            "gourmetgram_http_requests_total",
            {"endpoint": "/predict", "method": "POST", "status": "200"}) or 0.0)
    return counts


def test_metrics_add_up_across_workers(normal_app: LocalServer, tmp_path: Path) -> None:
    """/metrics sums every worker's counters, and under concurrent load both workers count."""
    client = Client(normal_app.url)
    labels = {"endpoint": "/predict", "method": "POST", "status": "200"}
    before = metric_value(client.get("/metrics").body.decode(), "gourmetgram_http_requests_total",
                          **labels)
    load = run_load(normal_app.url, sample_bytes("Egg"), 40, concurrency=4)
    assert load.completed == 40, load.errors[:3]
    text = client.get("/metrics").body.decode()
    assert metric_value(text, "gourmetgram_http_requests_total", **labels) - before == 40
    per_worker = served_per_worker(normal_app, tmp_path)
    assert sum(count > 0 for count in per_worker) >= 2, per_worker  # both workers served
    assert sum(per_worker) == before + 40
    assert metric_value(text, "gourmetgram_model_info", model_version=VERSION) == 1


def test_wrong_expected_version_fails_the_suite(normal_app: LocalServer) -> None:
    run = staging(normal_app.url, "--expect-version", "999", *LOAD)
    assert run.returncode == 1
    checks = verdicts(run.stdout)
    assert checks["version"] == "FAIL" and "'7', expected '999'" in run.stdout
    assert "RESULT: FAIL" in run.stdout


def test_a_tight_latency_budget_fails_the_load_check(normal_app: LocalServer) -> None:
    run = staging(normal_app.url, "--expect-version", VERSION, *LOAD, "--p95-ms", "0.01")
    assert run.returncode == 1
    assert verdicts(run.stdout)["load"] == "FAIL" and "exceeds the 0.01 ms budget" in run.stdout


def test_malformed_requests_do_not_crash_gunicorn_workers(normal_app: LocalServer) -> None:
    boots = worker_boots(normal_app)
    client = Client(normal_app.url)
    jpeg = sample_bytes("Soup")
    nasty = [b"", b"\x00" * 10_000, jpeg[:300], jpeg[: len(jpeg) // 2],
             png_claiming(50_000, 50_000), png_claiming(2**31 - 1, 1), bytes(reversed(jpeg))]
    for data in nasty:
        assert 400 <= client.post_file("/predict", data).status < 500
    plain = client.request("POST", "/predict", b"x" * 100, {"Content-Type": "text/plain"})
    assert plain.status == 400
    assert client.request("DELETE", "/predict").status == 405
    assert client.get("/readyz").status == 200
    assert client.post_file("/predict", jpeg).status == 200
    assert worker_boots(normal_app) == boots, normal_app.log()


def test_container_healthcheck_command(normal_app: LocalServer) -> None:
    def healthcheck(port: int) -> int:
        env = dict(os.environ, PORT=str(port))
        command = [sys.executable, "-m", "app.healthcheck"]
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True).returncode

    assert healthcheck(normal_app.port) == 0
    assert healthcheck(free_port()) == 1


def test_staging_suite_rejects_the_bad_architecture_model(bad_app: LocalServer) -> None:
    run = staging(bad_app.url, "--expect-version", VERSION, *LOAD)
    assert run.returncode == 1
    checks = verdicts(run.stdout)
    # The app became ready, validates input, answers every request and keeps up with load...
    failed = [name for name, verdict in checks.items() if verdict == "FAIL"]
    assert failed == ["answers follow the photo"], run.stdout
    assert sum(name.startswith("predict ") for name in checks) == 11
    # ...but one photo at a time, its batch-standardising head sees nothing: same answer.
    assert "all 11 photos got the same answer" in run.stdout
    assert "RESULT: FAIL" in run.stdout
    assert Client(bad_app.url).get("/healthz").status == 200  # no worker died
    assert worker_boots(bad_app) == 2


def test_the_suite_reports_an_unreachable_app() -> None:
    args = parse_args(["--url", "http://127.0.0.1:9", "--expect-version", "1", "--timeout", "2"])
    suite = Suite(args)
    assert suite.run() is False
    assert [(o.name, o.passed) for o in suite.outcomes] == [("ready", False)]
    assert "/readyz not ready: ConnectionRefusedError" in suite.outcomes[0].detail


@pytest.mark.parametrize(("drop", "message"), [
    ("", "class_names"), ("input_size", "lacks the ONNX metadata"), ("all", "not an ONNX model"),
])
def test_gunicorn_refuses_to_start_a_model_that_breaks_the_contract(
    trained_models, tmp_path: Path, drop: str, message: str
) -> None:
    import json

    import onnx

    path = tmp_path / "model.onnx"
    if drop == "all":
        path.write_bytes(trained_models["normal"].with_name("model.pth").read_bytes())
    else:
        proto = onnx.load(str(trained_models["normal"]))
        props = {p.key: p.value for p in proto.metadata_props if p.key != drop}
        if not drop:
            props["class_names"] = json.dumps(sorted(json.loads(props["class_names"]),
                                                     reverse=True))
        del proto.metadata_props[:]
        for key, value in props.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(path))
    server = serve(path, tmp_path)
    with pytest.raises(RuntimeError, match="gunicorn exited"):
        server.start(timeout=120)
    assert server.proc.returncode != 0
    log = server.log()
    assert "refusing to start" in log and message in log
