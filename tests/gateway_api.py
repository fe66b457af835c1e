"""Validate Gateway API objects offline the way the API server validates a create.

The schemas are the committed CRD schemas of the pinned release (tests/schemas/gateway-api/).
An object is checked in the order the API server uses:

1. apiVersion and kind name a committed schema; anything else is an error.
2. metadata: the ObjectMeta schema (kubernetes-validate, strict), a DNS-1123 subdomain name,
   and label and annotation keys and values of the valid form.
3. The schema's defaults are applied, as structural defaulting does.
4. jsonschema, strictly: every object is closed (``additionalProperties: false``) unless it
   is a map or has ``x-kubernetes-preserve-unknown-fields``, as strict field validation
   (kubectl's default) rejects an unknown field; ``format`` is checked (ipv4, ipv6, ...).
5. ``x-kubernetes-list-type`` set and map lists hold no duplicates.
6. Every ``x-kubernetes-validations`` rule is evaluated with cel-python (celpy), with
   Kubernetes' escaping of property names (``namespace`` is ``__namespace__``) and its
   ``split`` string function. Transition rules (those that read ``oldSelf``) apply to updates
   only and are skipped, as on a create.

Not checked here (left to the API server in the kind job): the cost limits of CEL rules and
the ``messageExpression`` of a rule (none of the committed schemas uses one).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
from celpy import celtypes

from tools.gateway_api_schemas import GROUP
from tools.gateway_api_schemas import OUT as SCHEMAS

# The Gateway API release the committed schemas are of (gateway_api_version in versions.yml).
# They were taken from the v1.4.0-rc.2 standard install: v1.4.0 changed no API after rc.2
# (its changelog lists one conformance-test fix), so the schemas are those of v1.4.0.
RELEASE = "v1.4.0"
PLURALS = {"GatewayClass": "gatewayclasses", "Gateway": "gateways", "HTTPRoute": "httproutes",
           "ReferenceGrant": "referencegrants"}
# CEL keywords that Kubernetes escapes as __word__ when they name a property.
CEL_RESERVED = {"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
                "function", "if", "import", "let", "loop", "package", "namespace", "return",
                "var", "void", "while"}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
ANNOTATIONS_MAX_BYTES = 256 * 1024


class GatewayAPIError(ValueError):
    """A Gateway API object the API server would refuse; the message lists every problem."""


def schema_path(api_version: str, kind: str) -> Path | None:
    """The committed schema file of one apiVersion/kind, None for a kind not of this group."""
    if kind not in PLURALS or not api_version.startswith(f"{GROUP}/"):
        return None
    version = api_version.removeprefix(f"{GROUP}/")
    return SCHEMAS / f"{GROUP}_{PLURALS[kind]}.{version}.json"


@cache
def raw_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The committed openAPIV3Schema of apiVersion/kind; an error names what is missing."""
    path = schema_path(api_version, kind)
    if path is None or not path.is_file():
        committed = sorted(p.name for p in SCHEMAS.glob("*.json"))
        raise GatewayAPIError(f"no committed Gateway API schema for {api_version} {kind} "
                              f"(have {committed})")
    return json.loads(path.read_text())


def closed(schema: dict[str, Any], root: bool = True) -> dict[str, Any]:
    """The schema with every non-map object closed, as strict field validation treats it."""
    schema = copy.deepcopy(schema)
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if schema.get("type") == "object" and not preserve and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = closed(schema["additionalProperties"], root=False)
    props = schema.get("properties", {})
    for name, sub in props.items():
        # ObjectMeta is checked on its own; status is ignored on create (status subresource).
        open_here = root and name in ("metadata", "status")
        props[name] = sub if open_here else closed(sub, root=False)
    if isinstance(schema.get("items"), dict):
        schema["items"] = closed(schema["items"], root=False)
    return schema


@cache
def validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    """A strict jsonschema validator for one apiVersion/kind."""
    schema = closed(raw_schema(api_version, kind))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def with_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """A copy of value with the schema's defaults filled in, as structural defaulting does."""
    if isinstance(value, dict):
        out = dict(value)
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
        extra = schema.get("additionalProperties")
        for name, item in out.items():
            sub = props.get(name, extra if isinstance(extra, dict) else None)
            if sub is not None:
                out[name] = with_defaults(item, sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [with_defaults(item, schema["items"]) for item in value]
    return value


def cel_name(name: str) -> str:
    """A property name as CEL sees it in Kubernetes (reserved words and symbols escaped)."""
    if name in CEL_RESERVED:
        return f"__{name}__"
    for plain, escaped in (("__", "__underscores__"), (".", "__dot__"), ("-", "__dash__"),
                           ("/", "__slash__")):
        name = name.replace(plain, escaped)
    return name


def cel_value(value: Any, schema: dict[str, Any]) -> Any:
    """value as a CEL value, object properties under their escaped names."""
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is None:  # a map: its keys are data
            extra = schema.get("additionalProperties")
            sub = extra if isinstance(extra, dict) else {}
            return celtypes.MapType({celtypes.StringType(k): cel_value(v, sub)
                                     for k, v in value.items()})
        return celtypes.MapType({celtypes.StringType(cel_name(k)): cel_value(v, props.get(k, {}))
                                 for k, v in value.items()})
    if isinstance(value, list):
        return celtypes.ListType([cel_value(v, schema.get("items", {})) for v in value])
    return celpy.json_to_cel(value)


def cel_split(text: celtypes.StringType, separator: celtypes.StringType) -> celtypes.ListType:
    """Kubernetes' strings.split(separator)."""
    return celtypes.ListType([celtypes.StringType(p) for p in str(text).split(str(separator))])


CEL_FUNCTIONS = {"split": cel_split}
OLD_SELF = re.compile(r"\boldSelf\b")


@cache
def cel_program(rule: str) -> celpy.Runner:
    """A compiled CEL rule."""
    env = celpy.Environment()
    return env.program(env.compile(rule), functions=CEL_FUNCTIONS)


def rule_failures(value: Any, schema: dict[str, Any], where: str = "") -> Iterator[str]:
    """Every x-kubernetes-validations rule that value breaks, with its path and message."""
    for check in schema.get("x-kubernetes-validations", []):
        rule = check["rule"]
        if OLD_SELF.search(rule):
            continue  # a transition rule: updates only
        try:
            result = cel_program(rule).evaluate({"self": cel_value(value, schema)})
        except celpy.CELEvalError as error:
            result = error
        if isinstance(result, bool | celtypes.BoolType):
            if not result:
                yield f"{where or '.'}: {check.get('message', rule)}"
        else:  # an evaluation error (e.g. a field the rule reads is absent) fails the rule
            yield f"{where or '.'}: {check.get('message', rule)} (error: {result})"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            sub = props.get(name, extra if isinstance(extra, dict) else None)
            if sub is not None:
                yield from rule_failures(item, sub, f"{where}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from rule_failures(item, schema["items"], f"{where}[{i}]")


def list_key(item: Any, kind: str, keys: list[str]) -> str:
    """What makes two entries of a set or map list the same entry."""
    if kind == "map" and isinstance(item, dict):
        return json.dumps([item.get(k) for k in keys])
    return json.dumps(item, sort_keys=True)


def list_duplicates(value: Any, schema: dict[str, Any], where: str = "") -> Iterator[str]:
    """Duplicates in x-kubernetes-list-type set and map lists."""
    if isinstance(value, list):
        kind = schema.get("x-kubernetes-list-type")
        if kind in ("set", "map"):
            keys = [list_key(v, kind, schema.get("x-kubernetes-list-map-keys", [])) for v in value]
            if len(keys) != len(set(keys)):
                yield f"{where}: duplicate entries in a list of type {kind}"
        for i, item in enumerate(value):
            yield from list_duplicates(item, schema.get("items", {}), f"{where}[{i}]")
    elif isinstance(value, dict):
        props = schema.get("properties", {})
        for name, item in value.items():
            if name in props:
                yield from list_duplicates(item, props[name], f"{where}.{name}")


def metadata_problems(obj: dict[str, Any], kube_version: str) -> Iterator[str]:
    """What the API server would refuse in metadata (ObjectMeta, name, labels, annotations)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        yield "metadata: required"
        return
    shell = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
    try:
        kubernetes_validate.validate(shell, kube_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        yield f"metadata: {error.message}"
    name = meta.get("name", "")
    if not (isinstance(name, str) and len(name) <= 253 and DNS_SUBDOMAIN.match(name)):
        yield f"metadata.name: {name!r} is not a DNS-1123 subdomain"
    for key, value in (meta.get("labels") or {}).items():
        if not qualified_key(key):
            yield f"metadata.labels: {key!r} is not a qualified name"
        if not (isinstance(value, str) and len(value) <= 63 and LABEL_VALUE.match(value)):
            yield f"metadata.labels.{key}: {value!r} is not a valid label value"
    annotations = meta.get("annotations") or {}
    for key in annotations:
        if not qualified_key(key):
            yield f"metadata.annotations: {key!r} is not a qualified name"
    size = sum(len(k) + len(str(v)) for k, v in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES:
        yield f"metadata.annotations: {size} bytes, more than {ANNOTATIONS_MAX_BYTES}"


def qualified_key(key: str) -> bool:
    """A label or annotation key: an optional DNS subdomain prefix and a qualified name."""
    prefix, _, name = key.rpartition("/")
    if prefix and not (len(prefix) <= 253 and DNS_SUBDOMAIN.match(prefix)):
        return False
    return len(name) <= 63 and bool(QUALIFIED_NAME.match(name))


def problems(obj: dict[str, Any], kube_version: str) -> list[str]:
    """Everything the API server would refuse in a create of obj (empty when it is valid)."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    try:
        schema = raw_schema(api_version, kind)
    except GatewayAPIError as error:
        return [str(error)]
    found = list(metadata_problems(obj, kube_version))
    defaulted = with_defaults(obj, schema)
    for error in validator(api_version, kind).iter_errors(defaulted):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        found.append(f"{path or '.'}: {error.message}")
    if found:  # rules assume a schema-valid object, as in the API server
        return found
    found += list_duplicates(defaulted, schema)
    found += rule_failures(defaulted, schema)
    return found


def validate(obj: dict[str, Any], kube_version: str) -> None:
    """Raise GatewayAPIError with every problem the API server would find in obj."""
    found = problems(obj, kube_version)
    if found:
        name = (obj.get("metadata") or {}).get("name")
        raise GatewayAPIError(f"{obj.get('kind')}/{name}: " + "; ".join(found))
