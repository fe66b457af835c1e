"""Fixtures shared by the project's tests, and a per-part timing summary."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mlflow_server import MlflowServer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow server on loopback, shared by the whole test session."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_mlflow(tmp_path: Path) -> Iterator[MlflowServer]:
    """A real MLflow server on loopback with an empty registry, for one test."""
    server = MlflowServer(tmp_path / "mlflow").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic Food-11 sample set (train/sample_data.py), made once per session."""
    from sample_data import make_sample_set

    return make_sample_set(tmp_path_factory.mktemp("food11-sample"))


@pytest.fixture(scope="session")
def trained_models(sample_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """model.onnx (+ model.pth, versions.txt) per scenario, trained once with the real trainer.

    Both get the full default schedule: "normal" and "bad-architecture" must each pass the
    evaluation suite (bad-architecture fails only when the app serves it one photo at a time).
    "slow" is the trained normal model after make_slow, as train_scenario("slow") makes it.
    """
    import config
    from model import TORCH_FILE, load_torch_model, make_slow, save_for_serving
    from trainer import train_scenario

    out = tmp_path_factory.mktemp("models")
    paths = {}
    for scenario, version in (("normal", "1"), ("bad-architecture", "2")):
        cfg = config.load_config({"data_dir": str(sample_data), "weights": "none"}, env={})
        model = train_scenario(scenario, cfg)
        paths[scenario] = save_for_serving(model, out / scenario, version)
    slow = make_slow(load_torch_model(paths["normal"].with_name(TORCH_FILE)),
                     config.SLOW_EXTRA_LAYERS)
    paths["slow"] = save_for_serving(slow, out / "slow", "3")
    return paths


_part_seconds: dict[str, float] = defaultdict(float)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Add each test's wall time (set-up included) to its part, the test file."""
    start = time.perf_counter()
    yield
    _part_seconds[item.nodeid.split("::")[0]] += time.perf_counter() - start


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Print the time each part of the suite took."""
    if not _part_seconds:
        return
    terminalreporter.section("time per part")
    for part, seconds in sorted(_part_seconds.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {part}")
