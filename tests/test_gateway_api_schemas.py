"""tools/gateway_api_schemas.py: the committed Gateway API schemas and how they are extracted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests import gateway_api
from tests.gateway_api import SCHEMAS
from tools import gateway_api_schemas as tool

COMMENT = re.compile(r"^(\w+) (\S+): the openAPIV3Schema of (.+), descriptions dropped, ")


def crd(versions: list[dict]) -> dict:
    """A small Gateway API CRD with the given versions."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.gateway.networking.k8s.io", "annotations": {
            "gateway.networking.k8s.io/bundle-version": "v9.9.9",
            "gateway.networking.k8s.io/channel": "standard"}},
        "spec": {"group": "gateway.networking.k8s.io",
                 "names": {"kind": "Widget", "plural": "widgets"}, "versions": versions},
    }


def version(name: str, served: bool = True, status: bool = True) -> dict:
    """A CRD version whose spec has a property called description."""
    schema = {
        "description": "A widget.",
        "properties": {
            "spec": {"description": "Its spec.", "type": "object", "properties": {
                "description": {"description": "Free text.", "type": "string", "maxLength": 64},
                "mode": {"default": {"description": "kept"}, "type": "object"}}},
            "status": {"description": "Its status.", "type": "object",
                       "properties": {"ready": {"type": "boolean"}}},
        },
        "type": "object",
    }
    out = {"name": name, "served": served, "schema": {"openAPIV3Schema": schema}}
    if status:
        out["subresources"] = {"status": {}}
    return out


def test_descriptions_go_and_everything_else_stays() -> None:
    stripped = tool.version_schema(version("v1"))
    spec = stripped["properties"]["spec"]
    assert "description" not in stripped and "description" not in spec
    assert spec["properties"]["description"] == {"type": "string", "maxLength": 64}
    assert spec["properties"]["mode"]["default"] == {"description": "kept"}
    assert stripped["properties"]["status"] == {"type": "object"}


def test_status_stays_where_the_version_has_no_status_subresource() -> None:
    stripped = tool.version_schema(version("v1", status=False))
    assert stripped["properties"]["status"]["properties"] == {"ready": {"type": "boolean"}}


def test_extract_writes_the_selected_served_versions(tmp_path: Path) -> None:
    source = tmp_path / "install.yaml"
    source.write_text(yaml.safe_dump_all([
        crd([version("v1"), version("v1beta1"), version("v1alpha1", served=False)]),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ignored"}},
    ]))
    written = tool.extract([source], None, tmp_path)
    assert sorted(p.name for p in written) == [
        "gateway.networking.k8s.io_widgets.v1.json",
        "gateway.networking.k8s.io_widgets.v1beta1.json",
    ]
    selected = tmp_path / "selected"
    selected.mkdir()
    only = tool.extract([source], {"widgets.v1beta1"}, selected)
    assert [p.name for p in only] == ["gateway.networking.k8s.io_widgets.v1beta1.json"]
    text = json.loads(only[0].read_text())
    assert text["$comment"].startswith(
        "Widget gateway.networking.k8s.io/v1beta1: the openAPIV3Schema of Gateway API v9.9.9 "
        "(standard channel)")
    with pytest.raises(SystemExit, match="widgets.v1alpha1"):
        tool.extract([source], {"widgets.v1alpha1"}, tmp_path)


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.json")), ids=lambda p: p.name)
def test_committed_schemas_are_in_the_form_the_tool_writes(path: Path) -> None:
    schema = json.loads(path.read_text())
    kind, api_version, source = COMMENT.match(schema.pop("$comment")).groups()
    # The release the schemas are of: the one versions.yml pins and the tests name.
    assert source == f"Gateway API {gateway_api.RELEASE} (standard channel)", path.name
    plural, served = path.name.removeprefix("gateway.networking.k8s.io_").split(".")[:2]
    assert api_version == f"gateway.networking.k8s.io/{served}", path.name
    assert path.read_text() == tool.render(kind, api_version, source, schema)
    assert tool.strip_descriptions(schema) == schema
    # ReferenceGrant has no status; the other kinds have the status subresource.
    assert schema["properties"].get("status") == (
        None if plural == "referencegrants" else {"type": "object"})
