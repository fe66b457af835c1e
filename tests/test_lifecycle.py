"""The lifecycle rules against a real MLflow server: aliases, history, approval, promotion."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import lifecycle
import pytest
from mlflow.tracking import MlflowClient

from app.localserver import free_port
from tests.mlflow_server import MlflowServer

_names = itertools.count()


@pytest.fixture
def client(mlflow_server: MlflowServer) -> MlflowClient:
    """A client of the session's MLflow server."""
    return MlflowClient(tracking_uri=mlflow_server.uri)


@pytest.fixture
def model(client: MlflowClient) -> Callable[[int], str]:
    """Make a registered model of its own for one test, with n versions; return its name."""

    def make(n: int) -> str:
        name = f"LifecycleTest{next(_names)}"
        client.create_registered_model(name)
        for i in range(n):
            client.create_model_version(name, source=f"s3://bucket/{name}/{i + 1}")
        return name

    return make


def refused(match: str):
    """pytest.raises for a LifecycleError whose message matches."""
    return pytest.raises(lifecycle.LifecycleError, match=match)


def test_record_deploy_moves_the_alias_and_appends_history(client, model) -> None:
    name = model(2)
    assert lifecycle.record_deploy(client, name, "staging", "1") == ["1"]
    assert lifecycle.record_deploy(client, name, "staging", "2") == ["1", "2"]
    assert lifecycle.current(client, name, "staging") == "2"
    tags = client.get_registered_model(name).tags
    assert tags["history.staging"] == "1,2"
    # A retried step records nothing twice.
    assert lifecycle.record_deploy(client, name, "staging", "2") == ["1", "2"]


def test_record_deploy_refuses_unknown_versions_and_environments(client, model) -> None:
    name = model(1)
    with refused(f"{name} has no version 9"):
        lifecycle.record_deploy(client, name, "staging", "9")
    with refused("unknown environment 'qa'"):
        lifecycle.record_deploy(client, name, "qa", "1")
    with refused("registered model 'NoSuchModel' does not exist"):
        lifecycle.current(client, "NoSuchModel", "staging")
    assert client.get_registered_model(name).aliases == {}


def test_history_keeps_the_newest_entries(client, model, monkeypatch) -> None:
    monkeypatch.setattr(lifecycle, "HISTORY_LIMIT", 3)
    name = model(5)
    for v in "12345":
        lifecycle.record_deploy(client, name, "canary", v)
    assert lifecycle.history(client, name, "canary") == ["3", "4", "5"]


def test_rollback_goes_back_one_step_at_a_time(client, model) -> None:
    name = model(3)
    for v in "123":
        lifecycle.record_deploy(client, name, "production", v)
    assert lifecycle.rollback_target(client, name, "production") == "2"
    assert lifecycle.record_rollback(client, name, "production", "2") == ["1", "2"]
    assert lifecycle.current(client, name, "production") == "2"
    # Retrying the same record is harmless; a second rollback goes one step further.
    assert lifecycle.record_rollback(client, name, "production", "2") == ["1", "2"]
    assert lifecycle.rollback_target(client, name, "production") == "1"
    lifecycle.record_rollback(client, name, "production", "1")
    with refused("has only ever run version 1"):
        lifecycle.rollback_target(client, name, "production")


def test_rollback_refuses_without_history_or_when_registry_disagrees(client, model) -> None:
    name = model(3)
    with refused("canary has no deployment history"):
        lifecycle.rollback_target(client, name, "canary")
    for v in "12":
        lifecycle.record_deploy(client, name, "canary", v)
    client.set_registered_model_alias(name, "canary", "3")  # moved by hand, outside the flow
    with refused("alias points to version 3 but history.canary ends with 2"):
        lifecycle.rollback_target(client, name, "canary")
    with refused("cannot record a rollback of canary to version 3"):
        lifecycle.record_rollback(client, name, "canary", "3")


def test_approval_is_only_for_what_staging_runs(client, model) -> None:
    name = model(2)
    lifecycle.record_deploy(client, name, "staging", "1")
    with refused("staging runs version 1, not 2"):
        lifecycle.approve(client, name, "2")
    assert not lifecycle.is_approved(client, name, "1")
    lifecycle.approve(client, name, "1")
    assert lifecycle.is_approved(client, name, "1")
    assert client.get_model_version(name, "1").tags["approved"] == "true"


def test_promotion_rules(client, model) -> None:
    name = model(2)
    lifecycle.record_deploy(client, name, "staging", "1")
    with refused("version 1 has not passed the staging tests"):
        lifecycle.check_promotion(client, name, "staging", "canary", "1")
    lifecycle.approve(client, name, "1")
    lifecycle.check_promotion(client, name, "staging", "canary", "1")
    with refused(r"version 2 is not in staging \(staging runs version 1\)"):
        lifecycle.check_promotion(client, name, "staging", "canary", "2")
    with refused(r"version 1 is not in canary \(canary runs no version yet\)"):
        lifecycle.check_promotion(client, name, "canary", "production", "1")
    for source, target in [("staging", "production"), ("production", "canary"),
                           ("canary", "staging"), ("staging", "staging")]:
        with refused(f"promotion {source} -> {target} is not allowed"):
            lifecycle.check_promotion(client, name, source, target, "1")
    lifecycle.record_deploy(client, name, "canary", "1")
    lifecycle.check_promotion(client, name, "canary", "production", "1")


def test_set_alias_checks_the_version(client, model) -> None:
    name = model(1)
    lifecycle.set_alias(client, name, "development", "1")
    assert client.get_registered_model(name).aliases == {"development": "1"}
    with refused("has no version 2"):
        lifecycle.set_alias(client, name, "development", "2")


def test_an_unreachable_server_is_an_error_not_a_refusal(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    away = MlflowClient(tracking_uri=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(Exception) as error:
        lifecycle.current(away, "GourmetGramFood11Model", "staging")
    assert not isinstance(error.value, lifecycle.LifecycleError)


def test_gate_decisions_are_kept_as_version_tags(client, model) -> None:
    import canary

    name = model(2)
    limits = canary.Thresholds()
    busy = canary.Figures(200, 0, 0.05, {"a": 100, "b": 100})
    slow = canary.Figures(200, 0, 0.9, {"a": 100, "b": 100})
    refused_one = canary.decision(canary.judge(slow, busy, limits), "2", "10m", limits, when=60)
    passed_one = canary.decision(canary.judge(busy, busy, limits), "2", "10m", limits, when=120)
    keys = [lifecycle.record_gate(client, name, "2", d) for d in (passed_one, refused_one)]
    assert keys == ["canary-gate.19700101T000200Z", "canary-gate.19700101T000100Z"]
    tags = client.get_model_version(name, "2").tags
    assert lifecycle.gate_decisions(tags) == [refused_one, passed_one]  # oldest first
    assert lifecycle.gate_decisions(client.get_model_version(name, "1").tags) == []
    with refused("has no version 3"):
        lifecycle.record_gate(client, name, "3", passed_one)
