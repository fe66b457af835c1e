"""The facts of a lab report, read from the cluster (kubectl), MLflow, the lease and answers.md.

Each source answers a plain dict. kubectl's documents come from a `Fetch`: `kubectl_fetch`
runs kubectl, `folder_fetch` reads the same JSON recorded in a folder (tests, the book's
sample). A source that cannot answer gives {"error": "..."} instead of stopping the report.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MODEL_NAME = "GourmetGramFood11Model"
ENVIRONMENTS = ("staging", "canary", "production")
APPLICATIONS = ("gourmetgram-platform", *(f"gourmetgram-{e}" for e in ENVIRONMENTS))
TEMPLATES = ("train-model", "build-container-image", "test-staging", "promote-model",
             "rollback", "live-users")
QUESTIONS = ("7.1", "7.2", "7.3", "7.4", "8.1", "8.2", "8.3", "8.4")
# Names kept in train/lifecycle.py; tests/test_lab_report.py checks that they agree.
APPROVED_TAG, HISTORY_PREFIX, GATE_PREFIX = "approved", "history.", "canary-gate."
# The run metrics a report keeps for each version (train/flow.py logs them).
METRICS = ("accuracy", "flip_agreement", "latency_ms", "model_bytes", "tests_passed",
           "tests_total")
APP_IMAGE = "gourmetgram-app"
# The cluster registry (Kubespray's addon), read through the API server's service proxy.
REGISTRY_TAGS = ("/api/v1/namespaces/kube-system/services/registry:5000/proxy/v2/"
                 f"{APP_IMAGE}/tags/list")

# Each kubectl document the report reads: its file name in a recorded folder -> kubectl args.
DOCUMENTS: dict[str, list[str]] = {
    "nodes": ["get", "nodes", "-o", "json"],
    "applications": ["get", "applications", "-n", "argocd", "-o", "json"],
    "workflows": ["get", "workflows", "-n", "argo", "-o", "json"],
    "httproute": ["get", "httproute", "gourmetgram-live", "-n", "gourmetgram-platform",
                  "-o", "json"],
    "registry-tags": ["get", "--raw", REGISTRY_TAGS],
}
Fetch = Callable[[str], dict]


class SourceError(Exception):
    """A source could not answer; the message says why."""


def kubectl_fetch(name: str, timeout: str = "15s") -> dict:
    """One of DOCUMENTS, from the cluster through kubectl."""
    return _kubectl(DOCUMENTS[name], timeout)


def _kubectl(words: list[str], timeout: str = "15s") -> dict:
    """`kubectl WORDS` (which ask for JSON), parsed; SourceError with kubectl's reason."""
    args = ["kubectl", f"--request-timeout={timeout}", *words]
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SourceError(f"kubectl did not run: {e}") from e
    if result.returncode != 0:
        raise SourceError(result.stderr.strip().splitlines()[-1] if result.stderr.strip()
                          else f"kubectl exited {result.returncode}")
    return json.loads(result.stdout)


def folder_fetch(folder: Path) -> Fetch:
    """A Fetch that reads DOCUMENTS recorded as <name>.json in folder."""
    def fetch(name: str) -> dict:
        path = folder / f"{name}.json"
        if not path.is_file():
            raise SourceError(f"{path.name} not recorded in {folder}")
        return json.loads(path.read_text())
    return fetch


def _time(text: str | None) -> datetime | None:
    """A Kubernetes/Argo timestamp as an aware datetime."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _guard(read: Callable[[], Any]) -> Any:
    """Run one source; its failure becomes {"error": ...}."""
    try:
        return read()
    except SourceError as e:
        return {"error": str(e)}


# ---- the cluster ---------------------------------------------------------------------------

def nodes(doc: dict) -> list[dict]:
    """Each node: name, roles, Ready, the conditions that are wrong, GPU label."""
    out = []
    for item in doc.get("items", []):
        labels = item["metadata"].get("labels", {})
        roles = sorted(k.split("/", 1)[1] for k in labels
                       if k.startswith("node-role.kubernetes.io/")) or ["worker"]
        conditions = {c["type"]: c for c in item.get("status", {}).get("conditions", [])}
        ready = conditions.get("Ready", {})
        pressure = {t: c.get("message", "") for t, c in conditions.items()
                    if t != "Ready" and c.get("status") == "True"}
        out.append({"name": item["metadata"]["name"], "roles": roles,
                    "ready": ready.get("status") == "True",
                    "ready_message": ready.get("message", ""),
                    "since": ready.get("lastTransitionTime"),
                    "pressure": pressure,
                    "gpu": labels.get("gourmetgram.io/gpu") == "true",
                    "kubelet": item.get("status", {}).get("nodeInfo", {}).get("kubeletVersion")})
    return sorted(out, key=lambda n: n["name"])


def applications(doc: dict) -> list[dict]:
    """Each Argo CD application: sync, health, its image tag and revision."""
    out = []
    for item in doc.get("items", []):
        status = item.get("status", {})
        helm = item.get("spec", {}).get("source", {}).get("helm", {})
        tag = next((p["value"] for p in helm.get("parameters", []) if p["name"] == "image.tag"),
                   None)
        out.append({"name": item["metadata"]["name"],
                    "sync": status.get("sync", {}).get("status", "Unknown"),
                    "health": status.get("health", {}).get("status", "Unknown"),
                    "health_message": status.get("health", {}).get("message", ""),
                    "revision": status.get("sync", {}).get("revision"),
                    "image_tag": tag})
    return sorted(out, key=lambda a: a["name"])


RETRY_SUFFIX = re.compile(r"\(\d+\)$")


def step_name(node: dict) -> str:
    """A node's step name: a retried step's pods are named like rollout(0), rollout(1)."""
    return RETRY_SUFFIX.sub("", node.get("displayName", "?"))


def _failed_step(nodes_: dict) -> dict | None:
    """The first failed pod step of a workflow, with its message."""
    pods = [n for n in nodes_.values() if n.get("type") == "Pod"
            and n.get("phase") in ("Failed", "Error")]
    if not pods:
        return None
    first = min(pods, key=lambda n: n.get("startedAt") or "")
    return {"name": step_name(first), "message": first.get("message", "")}


def workflows(doc: dict) -> list[dict]:
    """The lifecycle's workflows, oldest first: template, parameters, phase, times, failure."""
    out = []
    for item in doc.get("items", []):
        meta, spec, status = item["metadata"], item.get("spec", {}), item.get("status", {})
        template = (spec.get("workflowTemplateRef", {}).get("name")
                    or meta.get("labels", {}).get("workflows.argoproj.io/workflow-template"))
        if template not in TEMPLATES:
            continue
        begin, end = _time(status.get("startedAt")), _time(status.get("finishedAt"))
        steps = status.get("nodes") or {}
        pending = [{"step": step_name(n), "since": n.get("startedAt"),
                    "message": n.get("message", "")}
                   for n in steps.values()
                   if n.get("type") == "Pod" and n.get("phase") == "Pending"]
        out.append({
            "name": meta["name"], "uid": meta.get("uid", ""), "template": template,
            "created": meta.get("creationTimestamp"),
            "parameters": {p["name"]: p.get("value", "")
                           for p in spec.get("arguments", {}).get("parameters", [])},
            "phase": status.get("phase") or "Pending", "message": status.get("message", ""),
            "started": status.get("startedAt"), "finished": status.get("finishedAt"),
            "duration_s": round((end - begin).total_seconds()) if begin and end else None,
            "failed_step": _failed_step(steps) if status.get("phase") in ("Failed", "Error")
            else None,
            "steps": sorted({step_name(n) for n in steps.values()
                             if n.get("type") == "Pod" and n.get("phase") == "Succeeded"}),
            "pending": pending,
        })
    return sorted(out, key=lambda w: (w["created"] or "", w["name"]))


def live_route(doc: dict) -> dict:
    """The live HTTPRoute's weight for each environment, in percent."""
    weights = {}
    for rule in doc.get("spec", {}).get("rules", []):
        for ref in rule.get("backendRefs", []):
            env = ref.get("namespace", "").removeprefix("gourmetgram-")
            weights[env] = ref.get("weight", 1)
    return {"weights": weights}


def registry_tags(doc: dict) -> dict:
    """The app image's tags in the cluster registry (its /v2/<name>/tags/list answer)."""
    return {"image": doc.get("name", APP_IMAGE), "tags": sorted(doc.get("tags") or [])}


def cluster(fetch: Fetch) -> dict:
    """Every cluster fact; a document that cannot be read becomes an error entry."""
    readers = {"nodes": nodes, "applications": applications, "workflows": workflows,
               "httproute": live_route, "registry-tags": registry_tags}
    return {name.replace("-", "_"): _guard(lambda r=read, n=name: r(fetch(n)))
            for name, read in readers.items()}


# ---- MLflow --------------------------------------------------------------------------------

def kubectl_login() -> tuple[str, str]:
    """The MLflow login of the workflows: Secret mlflow-credentials in argo."""
    try:
        secret = _kubectl(["get", "secret", "mlflow-credentials", "-n", "argo", "-o", "json"])
    except SourceError as e:
        raise SourceError(f"no MLflow login: {e}") from e
    data = secret["data"]
    return tuple(base64.b64decode(data[k]).decode() for k in ("username", "password"))


class Mlflow:
    """MLflow's REST API with basic auth (urllib only, so it runs on the Jupyter server)."""

    def __init__(self, url: str, login: tuple[str, str] | None, timeout: float = 10.0) -> None:
        self.url, self.login, self.timeout = url.rstrip("/"), login, timeout

    def get(self, path: str, **query: str) -> dict:
        """GET /api/2.0/mlflow/<path>?query; SourceError when MLflow does not answer well."""
        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}")
        if self.login:
            token = base64.b64encode(":".join(self.login).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            detail = e.read()[:200].decode(errors="replace")
            raise SourceError(f"MLflow at {self.url} answered HTTP {e.code} to {path}: "
                              f"{detail}") from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise SourceError(f"MLflow at {self.url} did not answer: "
                              f"{getattr(e, 'reason', e)}") from e


def _pairs(items: list[dict] | None, key: str = "key") -> dict[str, str]:
    """MLflow's [{key, value}] lists as a dict."""
    return {i[key]: i.get("value", i.get("version")) for i in items or []}


def registry(api: Mlflow, name: str = MODEL_NAME) -> dict:
    """The registered model: aliases, history per environment, each version with its run."""
    model = api.get("registered-models/get", name=name)["registered_model"]
    aliases = {a["alias"]: a["version"] for a in model.get("aliases", [])}
    tags = _pairs(model.get("tags"))
    found = api.get("model-versions/search", filter=f"name='{name}'",
                    max_results="1000").get("model_versions", [])
    versions = []
    for mv in sorted(found, key=lambda v: int(v["version"])):
        vtags = _pairs(mv.get("tags"))
        run = api.get("runs/get", run_id=mv["run_id"])["run"] if mv.get("run_id") else {}
        data = run.get("data", {})
        metrics = {k: v for k, v in _pairs(data.get("metrics")).items() if k in METRICS}
        rtags = _pairs(data.get("tags"))
        gates = [json.loads(vtags[k]) for k in sorted(vtags) if k.startswith(GATE_PREFIX)]
        versions.append({
            "version": mv["version"], "run_id": mv.get("run_id", ""),
            "created": datetime.fromtimestamp(int(mv["creation_timestamp"]) / 1000,
                                              UTC).isoformat(timespec="seconds"),
            "scenario": vtags.get("scenario", rtags.get("scenario", "")),
            "dataset": vtags.get("dataset", rtags.get("dataset", "")),
            "approved": vtags.get(APPROVED_TAG) == "true",
            "aliases": sorted(a for a, v in aliases.items() if v == mv["version"]),
            "evaluation": rtags.get("evaluation", ""), "metrics": metrics, "gates": gates,
        })
    history = {env: [v for v in tags.get(HISTORY_PREFIX + env, "").split(",") if v]
               for env in ENVIRONMENTS}
    return {"model": name, "aliases": aliases, "history": history, "versions": versions}


def mlflow_facts(api: Mlflow, name: str = MODEL_NAME) -> dict:
    """The registry, or why MLflow could not give it."""
    return {"url": api.url, **_guard(lambda: registry(api, name))}


# ---- the lease and the answers -------------------------------------------------------------

def chameleon_lease(project: str, site: str, name: str) -> dict:
    """The lease from Blazar through python-chi (the Jupyter server has it and the login)."""
    try:
        from chi import context, lease
    except ImportError as e:
        raise SourceError(f"python-chi is not installed here ({e})") from e
    try:
        context.version = "1.0"
        context.set("project_name", project)
        context.use_site(site)
        found = lease.get_lease(name)
    except Exception as e:  # noqa: BLE001 - any Chameleon failure: reported, not fatal
        raise SourceError(f"Chameleon did not give lease {name}: {e}") from e

    def stamp(value: object) -> str | None:
        return value.isoformat() if isinstance(value, datetime) else (str(value) if value
                                                                        else None)
    return {"id": found.id, "name": found.name, "status": found.status,
            "start": stamp(getattr(found, "start_date", None)),
            "end": stamp(getattr(found, "end_date", None))}


HEADING = re.compile(r"^#{1,6}\s*(\d+\.\d+)\b.*$")
COMMENT = re.compile(r"<!--.*?-->", re.S)


def answers(text: str) -> dict[str, str]:
    """The answers of an answers.md: the text under each `## 7.1` heading, comments dropped."""
    found: dict[str, list[str]] = {}
    current = None
    for line in COMMENT.sub("", text).splitlines():
        heading = HEADING.match(line.strip())
        if heading:
            current = heading.group(1)
            found.setdefault(current, [])
        elif line.lstrip().startswith("#"):
            current = None
        elif current:
            found[current].append(line)
    return {q: "\n".join(found.get(q, [])).strip() for q in QUESTIONS}
