"""The model lifecycle rules, kept in the MLflow registry: aliases, history, approval."""

from __future__ import annotations

import json

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

ENVIRONMENTS = ("staging", "canary", "production")
# The only promotions allowed: a version moves one step at a time towards production.
PROMOTIONS = {"staging": "canary", "canary": "production"}
APPROVED_TAG = "approved"
HISTORY_PREFIX = "history."
# One model-version tag per canary-gate decision: canary-gate.<UTC time>, its JSON record.
GATE_PREFIX = "canary-gate."
# Keep the history tag well under MLflow's limit on tag values.
HISTORY_LIMIT = 200


class LifecycleError(Exception):
    """A lifecycle rule refused the request, or the registry lacks what it needs."""


def check_environment(env: str) -> str:
    """Return env if it is one of the deployment environments, else raise."""
    if env not in ENVIRONMENTS:
        expected = ", ".join(ENVIRONMENTS)
        raise LifecycleError(f"unknown environment {env!r}; expected one of {expected}")
    return env


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """All aliases of the registered model, alias -> version."""
    try:
        return dict(client.get_registered_model(name).aliases)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise LifecycleError(f"registered model {name!r} does not exist") from None
        raise


def check_version(client: MlflowClient, name: str, version: str) -> str:
    """Return version if the registered model has it, else raise."""
    try:
        return client.get_model_version(name, version).version
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise LifecycleError(f"{name} has no version {version}") from None
        raise


def current(client: MlflowClient, name: str, env: str) -> str:
    """The version an environment runs: the version its alias points to."""
    check_environment(env)
    version = aliases(client, name).get(env)
    if version is None:
        raise LifecycleError(f"no version of {name} has the alias {env!r} yet")
    return version


def set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Point an alias at an existing version."""
    check_version(client, name, version)
    client.set_registered_model_alias(name, alias, version)


def history(client: MlflowClient, name: str, env: str) -> list[str]:
    """The versions an environment has run, oldest first (registered-model tag history.<env>)."""
    check_environment(env)
    try:
        tags = client.get_registered_model(name).tags
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise LifecycleError(f"registered model {name!r} does not exist") from None
        raise
    raw = tags.get(HISTORY_PREFIX + env, "")
    return [v for v in raw.split(",") if v]


def _write_history(client: MlflowClient, name: str, env: str, versions: list[str]) -> None:
    """Store the history tag, dropping the oldest entries beyond HISTORY_LIMIT."""
    value = ",".join(versions[-HISTORY_LIMIT:])
    client.set_registered_model_tag(name, HISTORY_PREFIX + env, value)


def record_deploy(client: MlflowClient, name: str, env: str, version: str) -> list[str]:
    """After a healthy deployment: append to history.<env> and move alias env to version."""
    check_environment(env)
    check_version(client, name, version)
    versions = history(client, name, env)
    # A retried step must not record the same deployment twice.
    if not versions or versions[-1] != version:
        versions.append(version)
        _write_history(client, name, env, versions)
    client.set_registered_model_alias(name, env, version)
    return versions


def rollback_target(client: MlflowClient, name: str, env: str) -> str:
    """The version env ran before its current one, from history.<env>."""
    versions = history(client, name, env)
    if not versions:
        raise LifecycleError(f"{env} has no deployment history; nothing to roll back to")
    running = current(client, name, env)
    if versions[-1] != running:
        raise LifecycleError(
            f"{env} alias points to version {running} but history.{env} ends with "
            f"{versions[-1]}; fix the registry by hand before rolling back"
        )
    if len(versions) < 2:
        raise LifecycleError(f"{env} has only ever run version {running}; nothing to roll back to")
    return versions[-2]


def record_rollback(client: MlflowClient, name: str, env: str, version: str) -> list[str]:
    """After a healthy rollback: drop the newest history entry and move the alias back."""
    versions = history(client, name, env)
    if versions and versions[-1] == version and current(client, name, env) == version:
        return versions  # already recorded (a retried step)
    if len(versions) < 2 or versions[-2] != version:
        raise LifecycleError(
            f"cannot record a rollback of {env} to version {version}: "
            f"history.{env} is {','.join(versions) or 'empty'}"
        )
    versions.pop()
    _write_history(client, name, env, versions)
    client.set_registered_model_alias(name, env, version)
    return versions


def is_approved(client: MlflowClient, name: str, version: str) -> bool:
    """Whether a version carries the approval mark approved=true."""
    check_version(client, name, version)
    return client.get_model_version(name, version).tags.get(APPROVED_TAG) == "true"


def approve(client: MlflowClient, name: str, version: str) -> None:
    """Mark the version staging runs as having passed the staging tests."""
    running = current(client, name, "staging")
    if running != version:
        raise LifecycleError(f"staging runs version {running}, not {version}; not approving")
    client.set_model_version_tag(name, version, APPROVED_TAG, "true")


def check_promotion(
    client: MlflowClient, name: str, source: str, target: str, version: str
) -> None:
    """Raise unless version may move from source to target."""
    check_environment(source)
    check_environment(target)
    if PROMOTIONS.get(source) != target:
        raise LifecycleError(
            f"promotion {source} -> {target} is not allowed; "
            "versions move staging -> canary -> production"
        )
    check_version(client, name, version)
    running = aliases(client, name).get(source)
    if running != version:
        where = f"runs version {running}" if running else "runs no version yet"
        raise LifecycleError(f"version {version} is not in {source} ({source} {where})")
    if not is_approved(client, name, version):
        raise LifecycleError(
            f"version {version} has not passed the staging tests (no {APPROVED_TAG}=true tag)"
        )


def record_gate(client: MlflowClient, name: str, version: str, decision: dict) -> str:
    """Keep one canary-gate decision (canary.decision) as a tag of the version; return its key."""
    check_version(client, name, version)
    key = GATE_PREFIX + decision["time"].replace("-", "").replace(":", "")
    client.set_model_version_tag(name, version, key, json.dumps(decision, sort_keys=True))
    return key


def gate_decisions(tags: dict[str, str]) -> list[dict]:
    """The canary-gate decisions among a version's tags, oldest first."""
    return [json.loads(tags[key]) for key in sorted(tags) if key.startswith(GATE_PREFIX)]
