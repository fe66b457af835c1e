"""Recorded `kubectl get ... -o json` documents of a lab cluster, built from what the repo renders.

The objects come from the repository: Workflows from workflows/*.yaml (their step names, the
way `argo submit --from` and train-model's start-build create them), Argo CD Applications
from k8s/argocd/, the live HTTPRoute from the platform chart (tests/k8s_render.py), nodes from
Kubespray's inventory. Only the status is added, as the controllers would write it, from a
list of events:

    record([{"template": "train-model", "parameters": {"scenario": "slow"}, "version": "3"},
            {"template": "build-container-image", "parameters": {"version": "3"},
             "phase": "Failed", "failed_step": "staging-suite", "message": "..."}])

returns {"workflows": ..., "nodes": ..., "applications": ..., "httproute": ...,
"registry-tags": ...}, the files tools/lab_report.py --from-dir reads.
"""

from __future__ import annotations

import copy
import functools
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from tests import k8s_render

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "workflows"
START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
STEP_SECONDS = 60


def _stamp(moment: datetime) -> str:
    """A Kubernetes timestamp."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.cache
def templates() -> dict[str, dict]:
    """Every WorkflowTemplate of workflows/, by name (parsed once; callers copy what they edit)."""
    found = {}
    for path in sorted(WORKFLOWS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "WorkflowTemplate":
                found[doc["metadata"]["name"]] = doc
    return found


@functools.cache
def retried() -> frozenset[str]:
    """The step names, in any template, that call a template with a retryStrategy (ops)."""
    every = templates()
    out = set()
    for spec in every.values():
        for t in spec["spec"]["templates"]:
            for group in t.get("steps") or []:
                for step in group:
                    ref = step.get("templateRef")
                    owner = every[ref["name"]] if ref else spec
                    called = next(c for c in owner["spec"]["templates"]
                                  if c["name"] == (ref or step)["template"])
                    if "retryStrategy" in called:
                        out.add(step["name"])
    return frozenset(out)


def pod_steps(template: str, inner: str | None = None) -> list[str]:
    """The pod steps a template runs, in order, following templateRef into other templates."""
    every = templates()
    spec = every[template]["spec"]
    by_name = {t["name"]: t for t in spec["templates"]}
    current = by_name[inner or spec["entrypoint"]]
    if "steps" not in current:  # a workflow of one pod (live-users)
        return [current["name"]] if inner is None else []
    names = []
    for group in current["steps"]:
        for step in group:
            ref = step.get("templateRef")
            target = (every[ref["name"]]["spec"]["templates"] if ref else spec["templates"])
            called = next(t for t in target if t["name"] == (ref or step)["template"])
            if "steps" in called:
                names += pod_steps(ref["name"] if ref else template, called["name"])
            else:
                names.append(step["name"])
    return names


def skipped(template: str, parameters: dict[str, str]) -> set[str]:
    """The steps whose `when` is false for these parameters (on the sample set, image built)."""
    if template == "train-model":
        return {"build-image"} | ({"prepare-data"} if parameters.get("dataset", "sample")
                                  == "sample" else set())
    if template == "promote-model" and parameters.get("source-environment") != "canary":
        return {"canary-analysis"}
    return set()


def workflow(event: dict, index: int, begin: datetime) -> dict:
    """One Workflow object with the status an event describes."""
    template = event["template"]
    parameters = event.get("parameters", {})
    suffix = f"{index:05d}"[-5:]
    if template == "build-container-image":  # created by train-model's start-build step
        spec = templates()["train-model"]["spec"]["templates"]
        manifest = next(t for t in spec if t["name"] == "start-build")["resource"]["manifest"]
        obj = yaml.safe_load(manifest.replace("{{inputs.parameters.version}}",
                                              parameters["version"]))
        obj["metadata"]["name"] = obj["metadata"].pop("generateName") + suffix
    else:  # argo submit --from workflowtemplate/<template>
        defaults = {p["name"]: p.get("value", "") for p in
                    templates()[template]["spec"]["arguments"].get("parameters", [])}
        obj = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
               "metadata": {"name": event.get("name", f"{template}-{suffix}"),
                            "namespace": "argo",
                            "labels": {"workflows.argoproj.io/workflow-template": template}},
               "spec": {"workflowTemplateRef": {"name": template},
                        "arguments": {"parameters": [{"name": k, "value": v} for k, v in
                                                     {**defaults, **parameters}.items()]}}}
    obj["metadata"] |= {"uid": str(uuid.UUID(int=index + 1)),
                        "creationTimestamp": _stamp(begin)}
    phase = event.get("phase", "Succeeded")
    nodes: dict[str, dict] = {obj["metadata"]["name"]: {
        "displayName": obj["metadata"]["name"], "type": "Steps", "phase": phase}}
    moment = begin
    for i, step in enumerate(s for s in pod_steps(template)
                             if s not in skipped(template, parameters)):
        node = {"id": f"{obj['metadata']['name']}-{i}", "displayName": step, "type": "Pod",
                "startedAt": _stamp(moment)}
        if step in retried():  # a Retry node, its first pod named step(0)
            nodes[node["id"] + "-retry"] = {"displayName": step, "type": "Retry",
                                            "startedAt": node["startedAt"]}
            node["displayName"] = f"{step}(0)"
        retry = nodes.get(node["id"] + "-retry", {})
        if step == event.get("pending_step"):
            nodes[node["id"]] = node | {"phase": "Pending", "message": event["message"]}
            retry["phase"] = "Running"
            break
        failed = step == event.get("failed_step")
        node |= {"phase": "Failed" if failed else "Succeeded",
                 "finishedAt": _stamp(moment + timedelta(seconds=STEP_SECONDS))}
        retry |= {"phase": node["phase"], "finishedAt": node["finishedAt"]}
        if failed:
            node["message"] = event.get("message", "Error (exit code 1)")
            retry["message"] = node["message"]
        if step == "train":
            node["outputs"] = {"parameters": [{"name": "model-version",
                                               "value": event.get("version", "")}]}
        nodes[node["id"]] = node
        moment += timedelta(seconds=STEP_SECONDS)
        if failed:
            break
    status: dict[str, Any] = {"phase": phase, "nodes": nodes}
    if phase != "Pending" or event.get("pending_step"):
        status["startedAt"] = _stamp(begin)
    if phase in ("Succeeded", "Failed", "Error"):
        status["finishedAt"] = _stamp(moment)
    if event.get("workflow_message"):
        status["message"] = event["workflow_message"]
    obj["status"] = status
    return obj


def node(name: str, roles: list[str], ready: bool = True, pressure: dict | None = None,
         begin: datetime = START) -> dict:
    """A Node as the kubelet reports it."""
    conditions = [{"type": kind, "status": "True" if kind in (pressure or {}) else "False",
                   "message": (pressure or {}).get(kind, f"kubelet has no {kind}"),
                   "lastTransitionTime": _stamp(begin)}
                  for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")]
    conditions.append({"type": "Ready", "status": "True" if ready else "Unknown",
                       "message": "kubelet is posting ready status" if ready else
                       "Kubelet stopped posting node status.",
                       "lastTransitionTime": _stamp(begin)})
    labels = {"kubernetes.io/hostname": name,
              **{f"node-role.kubernetes.io/{r}": "" for r in roles}}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"conditions": conditions,
                       "nodeInfo": {"kubeletVersion": "v" + str(
                           k8s_render.versions()["kubernetes_version"]).lstrip("v")}}}


def cluster_nodes() -> list[dict]:
    """The nodes of Kubespray's inventory, with their roles."""
    hosts = yaml.safe_load((REPO / "ansible/k8s/inventory/mycluster/hosts.yaml").read_text())
    groups = hosts["all"]["children"]
    planes = set(groups["kube_control_plane"]["hosts"])
    return [node(n, ["control-plane"] if n in planes else [])
            for n in groups["kube_node"]["hosts"]]


def application(app: str, tag: str | None, sync: str = "Synced",
                health: str = "Healthy", message: str = "") -> dict:
    """k8s/argocd/<app>.yaml with image.tag set (as the deploy step sets it) and a status."""
    obj = copy.deepcopy(k8s_render.application(app))
    if tag:
        helm = obj["spec"]["source"].setdefault("helm", {})
        helm["parameters"] = [p for p in helm.get("parameters", []) if p["name"] != "image.tag"]
        helm["parameters"].append({"name": "image.tag", "value": tag})
    obj["status"] = {"sync": {"status": sync, "revision": "0" * 40},
                     "health": {"status": health, **({"message": message} if message else {})}}
    return obj


def live_route() -> dict:
    """The platform chart's HTTPRoute gourmetgram-live, as rendered on Chameleon."""
    objects = k8s_render.render(k8s_render.case("platform", "cloud"))
    return k8s_render.find(objects, "HTTPRoute", "gourmetgram-live")


def record(events: list[dict], tags: dict[str, str] | None = None,
           registry_tags: list[str] | None = None, nodes: list[dict] | None = None,
           applications: dict[str, dict] | None = None) -> dict[str, dict]:
    """The documents of a cluster after these events; tags: the image tag of each app."""
    tags = tags or {}
    begin = START
    flows = []
    for index, event in enumerate(events):
        flows.append(workflow(event, index, begin))
        begin += timedelta(minutes=10)
    overrides = applications or {}  # status by application file name
    apps = [application(a, tags.get(a), **overrides.get(a, {})) for a in k8s_render.APPLICATIONS]
    return {
        "workflows": {"apiVersion": "v1", "kind": "List", "items": flows},
        "nodes": {"apiVersion": "v1", "kind": "List", "items": nodes or cluster_nodes()},
        "applications": {"apiVersion": "v1", "kind": "List", "items": apps},
        "httproute": live_route(),
        "registry-tags": {"name": "gourmetgram-app", "tags": registry_tags or []},
    }


def write(documents: dict[str, dict], folder: Path, lease: dict | None = None) -> Path:
    """Write the documents (and the lease) as the JSON files --from-dir reads."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, doc in documents.items():
        (folder / f"{name}.json").write_text(json.dumps(doc, indent=1))
    if lease is not None:
        (folder / "lease.json").write_text(json.dumps(lease, indent=1))
    return folder
