"""The pod an Argo container template gives for one set of inputs, podSpecPatch applied.

Argo renders the template's tags (tests/argo_expr.py), builds the pod from the container
(named "main") and the template's volumes, nodeSelector and tolerations, then applies the
rendered podSpecPatch as a Kubernetes strategic merge patch on the PodSpec
(workflow/controller/workflowpod.go processPodSpecPatch, workflow/util ApplyPodSpecPatch).
strategic_merge below follows k8s.io/apimachinery strategicpatch for the fields of
MERGE_KEYS (the patchMergeKey tags of k8s.io/api core/v1): lists with a merge key merge
element by element, `$patch: delete` removes an element, other lists and values replace.
"""

from __future__ import annotations

import json

from tests import argo_expr

# (list field, merge key) as core/v1 tags them: PodSpec.volumes/containers/initContainers
# by name, Container.env by name, Container.volumeMounts by mountPath.
MERGE_KEYS = {"volumes": "name", "containers": "name", "initContainers": "name",
              "env": "name", "volumeMounts": "mountPath"}


def strategic_merge(original: dict, patch: dict) -> dict:
    """original with patch merged in, as a strategic merge patch on a PodSpec does."""
    out = dict(original)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key in MERGE_KEYS and isinstance(value, list):
            out[key] = merge_list(out.get(key) or [], value, MERGE_KEYS[key])
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = strategic_merge(out[key], value)
        else:
            out[key] = value
    return out


def merge_list(original: list[dict], patch: list[dict], key: str) -> list[dict]:
    """Elements matched by key merge, new ones are appended, `$patch: delete` removes."""
    out = list(original)
    for element in patch:
        at = next((i for i, o in enumerate(out) if o.get(key) == element.get(key)), None)
        if element.get("$patch") == "delete":
            if at is not None:
                del out[at]
        elif at is None:
            out.append(element)
        else:
            out[at] = strategic_merge(out[at], element)
    return out


def strings(node: object) -> list[str]:
    """Every string inside a YAML tree."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return []


def replaced(node: object, values: dict[str, str]) -> object:
    """node with each string replaced by its value in values."""
    if isinstance(node, str):
        return values.get(node, node)
    if isinstance(node, dict):
        return {key: replaced(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [replaced(value, values) for value in node]
    return node


def rendered(template: dict, inputs: dict[str, str]) -> dict:
    """The template with its tags replaced for these input parameters (name: value)."""
    env = {f"inputs.parameters.{name}": value for name, value in inputs.items()}
    texts = sorted({s for s in strings(template) if "{{" in s})
    values = {}
    for text, result in zip(texts, argo_expr.render([(s, env) for s in texts]), strict=True):
        if result.error:
            raise ValueError(f"{template['name']} with {inputs}: {result.error}")
        values[text] = result.value
    return replaced(template, values)


def pod(template: dict, inputs: dict[str, str]) -> dict:
    """The Pod of a container template for these inputs (what the scheduler gets to place)."""
    t = rendered(template, inputs)
    spec = {"containers": [{"name": "main", **t["container"]}], "restartPolicy": "Never"}
    for key in ("volumes", "nodeSelector", "tolerations"):
        if t.get(key):
            spec[key] = t[key]
    if t.get("podSpecPatch"):
        spec = strategic_merge(spec, json.loads(t["podSpecPatch"]))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": t["name"]}, "spec": spec}


def claims(pod_manifest: dict) -> dict[str, str]:
    """PersistentVolumeClaims a pod mounts, by mount path: what pins it to a node."""
    spec = pod_manifest["spec"]
    by_volume = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                 for v in spec.get("volumes") or [] if "persistentVolumeClaim" in v}
    found = {}
    for c in spec["containers"]:
        for m in c.get("volumeMounts") or []:
            if m["name"] in by_volume:
                found[m["mountPath"]] = by_volume[m["name"]]
    unmounted = set(by_volume) - {m["name"] for c in spec["containers"]
                                  for m in c.get("volumeMounts") or []}
    found |= {f"(not mounted: {name})": by_volume[name] for name in sorted(unmounted)}
    return found
