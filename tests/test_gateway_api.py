"""tests/gateway_api.py: defaulting, strict fields, list types, metadata and CEL rules."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests import gateway_api
from tests.k8s_render import case, find, render, versions

KUBE = str(versions()["kubernetes_minor"])


def live(kind: str) -> dict[str, Any]:
    """The platform's live Gateway, HTTPRoute or GatewayClass (a fresh copy)."""
    objects = render(case("platform", "cloud"))
    name = "traefik" if kind == "GatewayClass" else "gourmetgram-live"
    return copy.deepcopy(find(objects, kind, name))


def test_the_rendered_live_objects_are_valid() -> None:
    for kind in ("GatewayClass", "Gateway", "HTTPRoute"):
        assert gateway_api.problems(live(kind), KUBE) == [], kind


def test_defaults_are_applied_before_validation_as_the_api_server_does() -> None:
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "r"},
             "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "s"}]}]}}
    schema = gateway_api.raw_schema(route["apiVersion"], route["kind"])
    spec = gateway_api.with_defaults(route, schema)["spec"]
    assert spec["parentRefs"] == [{"name": "gw", "group": "gateway.networking.k8s.io",
                                   "kind": "Gateway"}]
    (rule,) = spec["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [{"name": "s", "group": "", "kind": "Service", "weight": 1}]
    # kind defaults to Service, so the CRD's rule asks for the Service port.
    assert gateway_api.problems(route, KUBE) == [
        ".spec.rules[0].backendRefs[0]: Must have port for Service reference"]


def test_a_defaulted_rules_list_gets_its_nested_defaults() -> None:
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "r"}, "spec": {}}
    schema = gateway_api.raw_schema(route["apiVersion"], route["kind"])
    assert gateway_api.with_defaults(route, schema)["spec"]["rules"] == [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]
    assert gateway_api.problems(route, KUBE) == []


def test_namespace_is_escaped_for_cel_as_kubernetes_does() -> None:
    assert gateway_api.cel_name("namespace") == "__namespace__"
    assert gateway_api.cel_name("sectionName") == "sectionName"
    route = live("HTTPRoute")
    parent = route["spec"]["parentRefs"][0]
    route["spec"]["parentRefs"] = [dict(parent, namespace="gourmetgram-platform"),
                                   dict(parent, namespace="other")]
    assert gateway_api.problems(route, KUBE) == []  # different namespaces: distinct parents
    route["spec"]["parentRefs"][1]["namespace"] = "gourmetgram-platform"
    assert gateway_api.problems(route, KUBE) == [
        ".spec.parentRefs: sectionName must be unique when parentRefs includes 2 or more "
        "references to the same parent"]


def test_transition_rules_are_left_to_updates() -> None:
    gateway_class = live("GatewayClass")
    rules = gateway_api.raw_schema("gateway.networking.k8s.io/v1", "GatewayClass")[
        "properties"]["spec"]["properties"]["controllerName"]["x-kubernetes-validations"]
    assert [r["rule"] for r in rules] == ["self == oldSelf"]
    assert gateway_api.problems(gateway_class, KUBE) == []


def test_a_rule_that_cannot_be_evaluated_fails() -> None:
    gateway = live("Gateway")
    listener = gateway["spec"]["listeners"][0]
    listener.update(protocol="HTTPS", tls={"mode": "Terminate"})
    # Neither certificateRefs nor options: the CRD's rule reads an absent field.
    (problem,) = gateway_api.problems(gateway, KUBE)
    assert problem.startswith(".spec.listeners[0].tls: certificateRefs or options must be "
                              "specified when mode is Terminate (error:")
    listener["tls"]["certificateRefs"] = [{"name": "cert"}]
    listener["tls"]["options"] = {}
    assert gateway_api.problems(gateway, KUBE) == []


def test_set_lists_hold_no_duplicates() -> None:
    route = live("HTTPRoute")
    route["spec"]["rules"][0]["filters"] = [{
        "type": "RequestHeaderModifier",
        "requestHeaderModifier": {"remove": ["x-debug", "x-debug"]}}]
    assert gateway_api.problems(route, KUBE) == [
        ".spec.rules[0].filters[0].requestHeaderModifier.remove: duplicate entries in a list "
        "of type set"]


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"name": "Live"}, "metadata.name: 'Live' is not a DNS-1123 subdomain"),
        ({"name": "live", "nmespace": "x"}, "metadata: Additional properties are not allowed"),
        ({"name": "live", "labels": {"app": 7}}, "metadata: 7 is not of type 'string'"),
        ({"name": "live", "labels": {"a/b/c": "x"}}, "metadata.labels: 'a/b/c' is not a qualified"),
        ({"name": "live", "annotations": {"-x": "y"}}, "metadata.annotations: '-x' is not a"),
        ({}, "metadata.name: '' is not a DNS-1123 subdomain"),
    ],
)
def test_metadata_is_checked_as_object_meta(metadata: dict, problem: str) -> None:
    route = live("HTTPRoute")
    route["metadata"] = metadata
    found = gateway_api.problems(route, KUBE)
    assert any(p.startswith(problem) for p in found), found


def test_status_is_not_validated_as_the_api_server_ignores_it_on_create() -> None:
    route = live("HTTPRoute")
    route["status"] = {"parents": "not a list"}
    assert gateway_api.problems(route, KUBE) == []
    route["statuss"] = {}
    assert gateway_api.problems(route, KUBE) == [
        ".: Additional properties are not allowed ('statuss' was unexpected)"]


def test_formats_are_checked() -> None:
    gateway = live("Gateway")
    gateway["spec"]["addresses"] = [{"type": "IPAddress", "value": "192.0.2.300"}]
    (problem,) = gateway_api.problems(gateway, KUBE)
    assert problem.startswith(".spec.addresses[0]: ")
    gateway["spec"]["addresses"] = [{"type": "IPAddress", "value": "192.0.2.30"}]
    assert gateway_api.problems(gateway, KUBE) == []


def every_rule(node: Any) -> list[str]:
    """All x-kubernetes-validations rules in a schema."""
    if isinstance(node, list):
        return [rule for item in node for rule in every_rule(item)]
    if not isinstance(node, dict):
        return []
    found = [check["rule"] for check in node.get("x-kubernetes-validations", [])]
    return found + [rule for value in node.values() for rule in every_rule(value)]


def test_cel_python_compiles_every_rule_of_the_committed_schemas() -> None:
    rules = [rule for path in sorted(gateway_api.SCHEMAS.glob("*.json"))
             for rule in every_rule(json.loads(path.read_text()))]
    assert len(rules) >= 90  # HTTPRoute alone has 77
    for rule in rules:
        assert gateway_api.cel_program(rule) is not None, rule
