"""Render the Helm charts of k8s/ offline, the way Argo CD would, for the Kubernetes tests."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "k8s"
ENVIRONMENTS = ("staging", "canary", "production")
APPLICATIONS = ("platform", *ENVIRONMENTS)

# What the playbook adds to each Application's helm parameters on Chameleon: node1's
# sharednet1 address (externalIP) and, for the platform, the floating IP (documentation
# addresses from RFC 5737, never real ones).
NODE1_ADDRESS = "192.0.2.11"
FLOATING_IP = "203.0.113.10"
PLAYBOOK_PARAMETERS = {
    "platform": {"externalIP": NODE1_ADDRESS, "floatingIP": FLOATING_IP},
    "app": {"externalIP": NODE1_ADDRESS},
}


@dataclass(frozen=True)
class Case:
    """One way a chart is rendered: an Argo CD Application on Chameleon or in kind."""

    app: str
    flavour: str
    chart: Path
    namespace: str
    release: str
    value_files: tuple[str, ...]
    values: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        """A short test id, e.g. staging-kind."""
        return f"{self.app}-{self.flavour}"


def load_yaml(path: Path) -> Any:
    """Parse one YAML file; a missing file is an error that names it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path.relative_to(REPO)} is missing")
    return yaml.safe_load(path.read_text())


def application(app: str) -> dict[str, Any]:
    """The Argo CD Application manifest k8s/argocd/<app>.yaml."""
    return load_yaml(K8S / "argocd" / f"{app}.yaml")


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Merge overlay into a copy of base the way Helm layers values files."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parameters_as_values(parameters: list[dict[str, str]]) -> dict[str, Any]:
    """Turn Argo CD helm parameters (name/value pairs, like --set) into a values tree."""
    values: dict[str, Any] = {}
    for parameter in parameters:
        expression = f"{parameter['name']}={parameter['value']}"
        values = deep_merge(values, helm.parse_set_string(expression))
    return values


def case(app: str, flavour: str) -> Case:
    """The render of one Application, as on Chameleon ("cloud") or in kind ("kind")."""
    spec = application(app)["spec"]
    source_helm = spec["source"].get("helm", {})
    files = tuple(source_helm.get("valueFiles", []))
    if flavour == "kind":
        files += ("values-kind.yaml",)
    parameters = list(source_helm.get("parameters") or [])
    if flavour == "cloud":
        extra = PLAYBOOK_PARAMETERS["platform" if app == "platform" else "app"]
        parameters += [{"name": k, "value": v} for k, v in extra.items()]
    return Case(
        app=app,
        flavour=flavour,
        chart=REPO / spec["source"]["path"],
        namespace=spec["destination"]["namespace"],
        release=application(app)["metadata"]["name"],
        value_files=files,
        values=parameters_as_values(parameters),
    )


def all_cases() -> list[Case]:
    """Every Application in both flavours."""
    return [case(app, flavour) for app in APPLICATIONS for flavour in ("cloud", "kind")]


def values_for(c: Case, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The user-supplied values of a case: its values files, its parameters, then extra."""
    merged: dict[str, Any] = {}
    for name in c.value_files:
        merged = deep_merge(merged, load_yaml(c.chart / name) or {})
    merged = deep_merge(merged, c.values)
    return deep_merge(merged, extra or {})


def render_templates(c: Case, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text, exactly as Helm renders the chart for this case."""
    with helm.Chart.load(c.chart) as chart:
        return chart.render(values_for(c, extra), name=c.release, namespace=c.namespace)


def render(c: Case, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The Kubernetes objects a case renders to (NOTES.txt and empty documents left out)."""
    objects = []
    for path, text in sorted(render_templates(c, extra).items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one object of this kind and name; fails with the names that do exist."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    names = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert len(found) == 1, f"expected one {kind}/{name}, have {names}"
    return found[0]


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers of a workload's pod template (empty for other kinds)."""
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    return pod.get("initContainers", []) + pod.get("containers", [])


def versions() -> dict[str, Any]:
    """versions.yml at the repository root."""
    return load_yaml(REPO / "versions.yml")
