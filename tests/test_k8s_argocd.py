"""The Argo CD Applications of k8s/argocd: schema, names, sources and sync policy."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest

from tests.k8s_render import APPLICATIONS, ENVIRONMENTS, K8S, REPO, application, load_yaml, versions

SCHEMA_FILE = REPO / "tests" / "schemas" / "argocd-application.schema.json"


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """Forbid unknown fields in every object with listed properties, like --strict."""
    schema = copy.deepcopy(schema)
    if schema.get("type") == "object" and "properties" in schema:
        schema.setdefault("additionalProperties", False)
        schema["properties"] = {k: closed(v) for k, v in schema["properties"].items()}
    if isinstance(schema.get("items"), dict):
        schema["items"] = closed(schema["items"])
    return schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    """A strict validator for the vendored Application schema."""
    schema = closed(json.loads(SCHEMA_FILE.read_text()))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("app", APPLICATIONS)
def test_application_matches_the_crd_schema(app: str, validator) -> None:
    manifest = application(app)
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(manifest)]
    assert not errors, errors
    assert manifest["apiVersion"] == "argoproj.io/v1alpha1" and manifest["kind"] == "Application"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "syncPolicy", "automated", "selfheal"), True),
        (("spec", "source", "helm", "valuesFiles"), ["values.yaml"]),
        (("spec", "destination", "namespace"), 7),
    ],
)
def test_schema_rejects_mistakes(path: tuple[str, ...], value: Any, validator) -> None:
    manifest = application("staging")
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert list(validator.iter_errors(manifest))


@pytest.mark.parametrize("app", APPLICATIONS)
def test_application_names_source_and_sync(app: str) -> None:
    manifest = application(app)
    spec = manifest["spec"]
    assert manifest["metadata"] == {"name": f"gourmetgram-{app}", "namespace": "argocd"}
    assert spec["destination"] == {
        "server": "https://kubernetes.default.svc",
        "namespace": f"gourmetgram-{app}",
    }
    assert spec["source"]["repoURL"] == versions()["repo_url"]
    assert spec["source"]["targetRevision"] == versions()["repo_revision"]
    chart = REPO / spec["source"]["path"]
    assert (chart / "Chart.yaml").is_file(), chart
    for values_file in spec["source"]["helm"]["valueFiles"]:
        assert (chart / values_file).is_file(), values_file
    assert (chart / "values-kind.yaml").is_file()
    assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert "CreateNamespace=true" in spec["syncPolicy"]["syncOptions"]
    # The playbook and the deploy workflow patch this list: it must exist.
    assert isinstance(spec["source"]["helm"]["parameters"], list)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_application_sets_the_image_tag_first(env: str) -> None:
    helm = application(env)["spec"]["source"]["helm"]
    assert helm["valueFiles"] == ["values.yaml", f"values-{env}.yaml"]
    # The deploy workflow replaces /spec/source/helm/parameters/0/value.
    first = helm["parameters"][0]
    assert first["name"] == "image.tag"
    tag = load_yaml(K8S / "gourmetgram" / f"values-{env}.yaml")["image"]["tag"]
    assert first["value"] == tag and tag.startswith(f"{env}-")


def test_platform_application_uses_the_platform_chart() -> None:
    source = application("platform")["spec"]["source"]
    assert source["path"] == "k8s/platform"
    assert source["helm"]["valueFiles"] == ["values.yaml"]
