"""The canary gate and the Grafana dashboard against a real Prometheus and real app servers.

One Prometheus (Debian's) runs the platform chart's scrape job, with pod discovery swapped
for a targets file carrying the labels Kubernetes would set, so environment and version
come from the chart's relabel rules. It scrapes six real gunicorn apps on loopback:
production (version 1) and five canaries: healthy (2), one that answers 500 (3) and one
that is slow (4), both through the test-only tests/faulty_app.py inside Flask, one that
predicts one class for every photo (5), and one serving the `slow` training scenario's model
(6; same predictions, make_slow's extra convolutions). The tests' own bounded load drives
them all at once.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import canary
import ops
import pytest
import torch
import yaml
from live_users import play
from model import load_torch_model, save_for_serving

from app.localserver import LocalServer, free_port
from tests.prometheus_server import PrometheusServer, loopback_config, pod_target

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "k8s" / "platform" / "files" / "gourmetgram-dashboard.json"
REQUESTS_EACH = 90  # per app; the gate below needs MIN_REQUESTS of them
MIN_REQUESTS = 60
SLOW_DELAY_S = 0.15
WINDOW = "5m"
VERSIONS = {"production": "1", "healthy": "2", "errors": "3", "slow": "4", "skewed": "5",
            "slow-model": "6"}
# The two canaries that misbehave in the server rather than in the model (tests/faulty_app.py).
FAULTS = {"errors": {"wsgi": "tests.faulty_app:app", "FAULTY_APP_FAIL": "1"},
          "slow": {"wsgi": "tests.faulty_app:app", "FAULTY_APP_DELAY_S": str(SLOW_DELAY_S)}}


def one_class_model(normal: Path, out: Path, version: str, class_index: int = 3) -> Path:
    """The normal model with its last layer set to answer one class for every photo."""
    model = load_torch_model(normal.with_name("model.pth"))
    last = model.classifier[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-10.0)
        last.bias[class_index] = 10.0
    return save_for_serving(model, out, version)


def relabelled(model_path: Path, out: Path, version: str) -> Path:
    """The same model under another version number."""
    return save_for_serving(load_torch_model(model_path.with_name("model.pth")), out, version)


@pytest.fixture(scope="module")
def live(trained_models: dict[str, Path], sample_data: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The six apps and Prometheus, after the load has run and been scraped."""
    root = tmp_path_factory.mktemp("canary")
    normal = trained_models["normal"]
    models = {
        "production": relabelled(normal, root / "production", VERSIONS["production"]),
        "healthy": relabelled(normal, root / "healthy", VERSIONS["healthy"]),
        "errors": relabelled(normal, root / "errors", VERSIONS["errors"]),
        "slow": relabelled(normal, root / "slow", VERSIONS["slow"]),
        "skewed": one_class_model(normal, root / "skewed", VERSIONS["skewed"]),
        "slow-model": relabelled(trained_models["slow"], root / "slow-model",
                                 VERSIONS["slow-model"]),
    }
    servers = {}
    for name, path in models.items():
        extra = FAULTS.get(name, {})
        servers[name] = LocalServer(path, path.parent / "versions.txt",
                                    root / f"{name}.log", WORKERS="1", **extra)
    started: list[LocalServer] = []
    problems: list[BaseException] = []

    def start(server: LocalServer) -> None:
        try:
            started.append(server.start())
        except BaseException as err:  # noqa: BLE001 - reported below
            problems.append(err)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    prometheus = None
    try:
        if problems:
            raise problems[0]
        targets_file = root / "targets.json"
        targets = [
            pod_target(f"127.0.0.1:{s.port}", "production" if name == "production" else "canary",
                       f"{'production' if name == 'production' else 'canary'}-{VERSIONS[name]}",
                       f"gourmetgram-app-{name}")
            for name, s in servers.items()
        ]
        targets_file.write_text(json.dumps(targets))
        prometheus = PrometheusServer(root / "prometheus", loopback_config(targets_file)).start()
        wait_for(lambda: len([t for t in prometheus.active_targets() if t["health"] == "up"])
                 == len(servers), 20, "all six apps scraped")
        # Validation photos of the synthetic set: the normal model gets most of them right,
        # so production's predictions spread over the classes.
        images = [(p.name, p.read_bytes())
                  for p in sorted((sample_data / "validation").rglob("*.jpg"))][::3]
        # One request each first, so that every series exists before the load: increase()
        # counts from a series' first sample, and a series appears with its first request.
        for server in servers.values():
            play(server.url, images, rate=1, duration_s=5, users=1, max_requests=1)
        time.sleep(2.5)
        results = {}

        def drive(name: str) -> None:
            results[name] = play(servers[name].url, images, rate=50, duration_s=40,
                                 users=2, max_requests=REQUESTS_EACH)

        loaders = [threading.Thread(target=drive, args=(n,)) for n in servers]
        for t in loaders:
            t.start()
        for t in loaders:
            t.join()
        time.sleep(3)  # two more scrapes after the last request
        yield {"prometheus": prometheus, "servers": servers, "played": results}
    finally:
        if prometheus:
            prometheus.stop()
        for s in started:
            s.stop()


def wait_for(check, seconds: float, what: str) -> None:
    """Poll check() until it is true; fail the test naming what did not happen."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)


def gate(live: dict, version: str, *extra: str) -> tuple[int, str]:
    """Run `canary.py judge` (the gate's real command line) against the loopback Prometheus."""
    args = ["judge", "--prometheus", live["prometheus"].url, "--version", version,
            "--window", WINDOW, "--min-requests", str(MIN_REQUESTS), *extra]
    p = canary.argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    canary.add_gate_flags(sub.add_parser("judge"))
    return canary.run_gate(p.parse_args(args))


def refusals(message: str) -> list[str]:
    """The rule names the gate refused on ("error ratio", "p95 latency", ...)."""
    return re.findall(r"^  - ([a-z0-9 ]+?):", message, flags=re.MULTILINE)


def test_load_was_served(live: dict) -> None:
    """Every app got the full load; only the failing canary answered 500."""
    for name, played in live["played"].items():
        assert played.sent == REQUESTS_EACH, (name, played.summary())
        expected = {500: REQUESTS_EACH} if name == "errors" else {200: REQUESTS_EACH}
        assert dict(played.statuses) == expected, (name, played.summary())


def test_relabelling_takes_environment_and_version_from_pod_labels(live: dict) -> None:
    """The chart's relabel rules turn the pod labels into environment and model version."""
    found = {(t["labels"]["environment"], t["labels"]["version"], t["labels"]["namespace"])
             for t in live["prometheus"].active_targets()}
    assert found == {("production", "1", "gourmetgram-production")} | {
        ("canary", v, "gourmetgram-canary") for k, v in VERSIONS.items() if k != "production"}
    # The version label agrees with what each app itself says it serves.
    info = live["prometheus"].api("query", query="gourmetgram_model_info")["result"]
    assert info and all(s["metric"]["model_version"] == s["metric"]["version"] for s in info)


def test_gate_passes_a_healthy_canary(live: dict) -> None:
    """Same model, same photos: nothing refuses."""
    code, message = gate(live, VERSIONS["healthy"])
    assert code == canary.OK, message
    assert "PASS" in message


def test_gate_refuses_a_canary_that_errors(live: dict) -> None:
    """The canary that answers 500: the error-ratio rule refuses."""
    code, message = gate(live, VERSIONS["errors"])
    assert code == canary.REFUSED
    assert "error ratio" in refusals(message), message
    assert "error ratio: canary 1.000 > production 0.000" in message


def test_gate_refuses_a_slow_canary(live: dict) -> None:
    """A canary 150 ms slower per photo: only the p95 rule refuses."""
    code, message = gate(live, VERSIONS["slow"])
    assert code == canary.REFUSED
    assert refusals(message) == ["p95 latency"], message


def test_gate_refuses_the_slow_scenarios_model(live: dict) -> None:
    """The `slow` model passes every offline gate; live, only the p95 rule refuses it."""
    code, message = gate(live, VERSIONS["slow-model"])
    assert code == canary.REFUSED
    assert refusals(message) == ["p95 latency"], message
    limits = canary.Thresholds()
    figures = re.search(
        r"p95 latency: canary ([\d.]+) s > production ([\d.]+) s x "
        rf"{re.escape(f'{limits.p95_ratio:g}')} \+ {re.escape(f'{limits.p95_slack_s:g}')} s "
        r"= ([\d.]+) s", message)
    assert figures, message
    slow_p95, production_p95, limit = map(float, figures.groups())
    assert limit == pytest.approx(production_p95 * limits.p95_ratio + limits.p95_slack_s,
                                  abs=2e-3)
    assert slow_p95 > limit, message


def test_gate_refuses_a_canary_that_predicts_differently(live: dict) -> None:
    """A canary that calls every photo the same class: only the divergence rule refuses."""
    code, message = gate(live, VERSIONS["skewed"])
    assert code == canary.REFUSED
    assert refusals(message) == ["predictions"], message


def test_gate_refuses_too_few_requests(live: dict) -> None:
    """The healthy canary with a higher bar, and a version nobody called, are not judged."""
    code, message = gate(live, VERSIONS["healthy"], "--min-requests", str(REQUESTS_EACH * 10))
    assert code == canary.REFUSED
    assert refusals(message) == ["too few requests to judge"] * 2, message
    code, message = gate(live, "42")
    assert code == canary.REFUSED
    assert "canary answered 0 /predict requests" in message


def test_gate_through_ops_py(live: dict, capsys: pytest.CaptureFixture) -> None:
    """promote-model's step, `ops.py canary-analysis`, gives the gate's exit codes."""
    base = ["canary-analysis", "--prometheus", live["prometheus"].url, "--window", WINDOW,
            "--min-requests", str(MIN_REQUESTS)]
    assert ops.main([*base, "--version", VERSIONS["healthy"]]) == ops.OK
    assert ops.main([*base, "--version", VERSIONS["slow"]]) == ops.REFUSED
    assert "p95 latency" in capsys.readouterr().err


def test_gate_query_returns_data(live: dict) -> None:
    """Every PromQL query of the gate returns a series for a healthy canary and production."""
    for name, promql in canary.queries(VERSIONS["healthy"], WINDOW).items():
        if name.endswith(":errors"):
            # No 5xx from the healthy pair: the error query must see the canary that errors.
            promql = canary.queries(VERSIONS["errors"], WINDOW)[name]
            if name.startswith("production"):
                continue
        assert canary.query(live["prometheus"].url, promql), f"{name}: {promql} is empty"


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the provisioned dashboard."""
    board = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"])
            for panel in board["panels"] for target in panel.get("targets", [])]


def test_dashboard_queries_return_data(live: dict) -> None:
    """No panel of the GourmetGram dashboard is empty with canary and production serving."""
    queries = dashboard_queries()
    assert len(queries) >= 6
    for title, expr in queries:
        promql = expr.replace("$__rate_interval", "1m")
        assert "$" not in promql, f"{title}: unknown Grafana variable in {expr}"
        result = canary.query(live["prometheus"].url, promql)
        values = [float(s["value"][1]) for s in result]
        assert values and any(v == v for v in values), f"panel {title!r}: {promql} has no data"
        # Each panel splits by environment and version, as the lab's questions need.
        assert all({"environment", "version"} <= set(s["metric"]) for s in result), title


def test_unreachable_prometheus_is_retryable_never_a_pass(capsys: pytest.CaptureFixture) -> None:
    """Nothing listens: exit code 5 (the workflow retries), from both command lines."""
    url = f"http://127.0.0.1:{free_port()}"
    assert canary.main(["judge", "--prometheus", url, "--version", "2"]) == canary.UNREACHABLE
    assert "unreachable" in capsys.readouterr().err
    assert ops.main(["canary-analysis", "--prometheus", url, "--version", "2"]) == ops.UNREACHABLE


def test_chart_config_keeps_pod_discovery() -> None:
    """The chart's scrape job discovers pods in exactly the three app namespaces."""
    config = yaml.safe_load((REPO / "k8s/platform/files/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    assert sd["namespaces"]["names"] == [f"gourmetgram-{e}" for e in
                                         ("staging", "canary", "production")]
