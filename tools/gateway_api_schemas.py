"""Extract the Gateway API schemas the chart tests validate against from the release's CRDs.

    python tools/gateway_api_schemas.py standard-install.yaml \\
        --select gatewayclasses.v1 gateways.v1 httproutes.v1 referencegrants.v1beta1

Reads CustomResourceDefinitions (a release's ``standard-install.yaml`` or the files of
``config/crd/standard/``) and writes, for each served version, its ``openAPIV3Schema`` to
``tests/schemas/gateway-api/<group>_<plural>.<version>.json``: descriptions are dropped and,
where the version has the status subresource, ``status`` is left an open object (the API
server ignores status in a create or update of the main resource). Every other keyword stays.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "schemas" / "gateway-api"
GROUP = "gateway.networking.k8s.io"
# Schema keywords whose value is a mapping of names to schemas (not a schema itself).
NAMED_SCHEMAS = ("properties", "patternProperties", "definitions")


def strip_descriptions(schema: Any) -> Any:
    """The schema without its description keywords (a property named description stays)."""
    if isinstance(schema, list):
        return [strip_descriptions(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in NAMED_SCHEMAS and isinstance(value, dict):
            out[key] = {name: strip_descriptions(sub) for name, sub in value.items()}
        elif key in ("default", "enum", "example"):
            out[key] = value
        else:
            out[key] = strip_descriptions(value)
    return out


def version_schema(version: dict[str, Any]) -> dict[str, Any]:
    """One CRD version's schema in the committed form."""
    schema = strip_descriptions(version["schema"]["openAPIV3Schema"])
    properties = schema.get("properties", {})
    if "status" in (version.get("subresources") or {}) and "status" in properties:
        properties["status"] = {"type": "object"}
    return schema


def file_name(crd: dict[str, Any], version: str) -> str:
    """tests/schemas/gateway-api/ file name of one CRD version."""
    return f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.{version}.json"


def render(kind: str, api_version: str, source: str, schema: dict[str, Any]) -> str:
    """The text of one schema file: the schema, with where it came from as its $comment."""
    comment = (
        f"{kind} {api_version}: the openAPIV3Schema of {source}, descriptions dropped, "
        "status left open (tools/gateway_api_schemas.py; tests/schemas/gateway-api/README.md)"
    )
    return json.dumps({"$comment": comment, **schema}, indent=2) + "\n"


def served(crds: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(CRD, version) for every served version of the Gateway API CRDs among crds."""
    for crd in crds:
        if crd and crd.get("kind") == "CustomResourceDefinition" and crd["spec"]["group"] == GROUP:
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    yield crd, version


def source_label(crd: dict[str, Any]) -> str:
    """Where a CRD came from, as its annotations say (bundle version and channel)."""
    notes = crd["metadata"].get("annotations", {})
    bundle = notes.get(f"{GROUP}/bundle-version", "unknown version")
    channel = notes.get(f"{GROUP}/channel", "unknown")
    return f"Gateway API {bundle} ({channel} channel)"


def extract(paths: list[Path], select: set[str] | None, out: Path = OUT) -> list[Path]:
    """Write the selected served versions (plural.version) of the CRDs in paths to out."""
    crds = [doc for path in paths for doc in yaml.safe_load_all(path.read_text())]
    written = []
    for crd, version in served(crds):
        key = f"{crd['spec']['names']['plural']}.{version['name']}"
        if select is not None and key not in select:
            continue
        api_version = f"{GROUP}/{version['name']}"
        text = render(crd["spec"]["names"]["kind"], api_version, source_label(crd),
                      version_schema(version))
        target = out / file_name(crd, version["name"])
        target.write_text(text)
        written.append(target)
    missing = (select or set()) - {p.name.split("_", 1)[1].removesuffix(".json") for p in written}
    if missing:
        raise SystemExit(f"not served by these CRDs: {sorted(missing)}")
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: CRD files in, schema files out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crds", nargs="+", type=Path, help="CRD YAML files")
    parser.add_argument("--select", nargs="+", help="plural.version pairs to write (all if unset)")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    args = parser.parse_args(argv)
    for path in extract(args.crds, set(args.select) if args.select else None, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
