"""Point an Argo CD Application at an image tag, wait until it is healthy, restore it if not."""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

TAG_PARAMETER = "image.tag"
# A fresh value on every deploy: a pod annotation in the chart, so each deploy rolls out new
# pods and health describes them, not pods left from an earlier, failed attempt.
ROLLOUT_PARAMETER = "rolloutId"
ARGOCD_NAMESPACE = "argocd"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Marks the sync operations this module starts, so a failure is blamed on the right one.
REQUEST_INFO = "gourmetgram-request"
NOT_ASSESSED = "Argo CD has not assessed the synced application yet"
# What `argocd app get --refresh` does: ask for a full comparison, which moves reconciledAt
# (events from the pods only trigger lighter ones, which leave it alone).
REFRESH_PATCH = {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}


class ClusterError(Exception):
    """The Kubernetes API refused a request or could not be reached (`transient`: retry it)."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class RolloutFailed(Exception):
    """The new tag never became healthy; `restored` says whether the old one is back."""

    def __init__(self, message: str, restored: bool) -> None:
        super().__init__(message)
        self.restored = restored


class Applications(Protocol):
    """What rollout needs from the cluster: read and merge-patch an Application."""

    def get(self, name: str) -> dict: ...

    def patch(self, name: str, body: dict) -> dict: ...


def app_name(env: str) -> str:
    """The Argo CD Application that deploys an environment."""
    return f"gourmetgram-{env}"


def _helm(source: dict | None) -> dict:
    """The helm section of an Application source (empty if none)."""
    return (source or {}).get("helm") or {}


def _param(parameters: list[dict], name: str = TAG_PARAMETER) -> str | None:
    """The value a list of helm parameters gives `name` (the image tag by default), if any."""
    for p in parameters:
        if p.get("name") == name:
            return p.get("value")
    return None


def image_tag(app: dict) -> str | None:
    """The image tag the Application's spec asks for (None: the chart's values decide)."""
    source = app.get("spec", {}).get("source")
    if source is None:
        name = app.get("metadata", {}).get("name")
        raise ClusterError(f"Application {name} has no spec.source (multi-source is unsupported)")
    return _param(_helm(source).get("parameters") or [])


def tag_patch(app: dict, tag: str | None, request: str) -> dict:
    """A merge patch that sets (or, for None, removes) the tag and asks Argo CD to sync."""
    params = [
        p for p in _helm(app["spec"]["source"]).get("parameters") or []
        if p.get("name") not in (TAG_PARAMETER, ROLLOUT_PARAMETER)
    ]
    if tag is not None:
        params.append({"name": TAG_PARAMETER, "value": tag})
    params.append({"name": ROLLOUT_PARAMETER, "value": request})
    # Argo CD takes a sync's options from the operation alone (its API server copies them in
    # from the spec; this patch bypasses the API server), so they are copied here.
    policy = app["spec"].get("syncPolicy") or {}
    sync: dict = {"syncStrategy": {"hook": {}}}
    if policy.get("syncOptions"):
        sync["syncOptions"] = list(policy["syncOptions"])
    if (policy.get("automated") or {}).get("prune"):
        sync["prune"] = True
    return {
        # A merge patch replaces lists whole, so the other parameters are sent back unchanged.
        "spec": {"source": {"helm": {"parameters": params}}},
        "operation": {
            "initiatedBy": {"username": "gourmetgram-ops", "automated": False},
            "info": [{"name": REQUEST_INFO, "value": request}],
            "sync": sync,
        },
    }


def _ours(status: dict, request: str) -> bool:
    """Whether the last sync operation is the one this request started."""
    info = status.get("operationState", {}).get("operation", {}).get("info") or []
    return {"name": REQUEST_INFO, "value": request} in info


def state(app: dict, tag: str | None, request: str) -> tuple[str, str]:
    """Classify the Application as ('ready'|'waiting'|'unassessed'|'failed', why).

    'unassessed' is waiting too, for a comparison that only a refresh request brings soon.

    Health counts only once Argo CD has synced this request's spec (its rolloutId) and has
    assessed the Application after that sync finished: until then the status may describe
    the pods of before, such as a Degraded deployment still waiting for a missing image.
    """
    status = app.get("status") or {}
    op = status.get("operationState") or {}
    phase = op.get("phase", "")
    if "operation" in app:
        return "waiting", "Argo CD has not started the sync yet"
    if _ours(status, request) and phase in ("Failed", "Error"):
        return "failed", f"sync {phase.lower()}: {op.get('message', 'no message')}"
    if phase in ("Running", "Terminating"):
        return "waiting", "a sync operation is still running"
    sync = status.get("sync") or {}
    compared = _helm((sync.get("comparedTo") or {}).get("source")).get("parameters") or []
    if _param(compared) != tag or _param(compared, ROLLOUT_PARAMETER) != request:
        return "waiting", f"Argo CD has not applied tag {tag} yet"
    if sync.get("status") != "Synced":
        return "waiting", f"sync {sync.get('status', 'Unknown')}"
    # Strictly later: a refresh in the same second may have started before the sync ended.
    if status.get("reconciledAt", "") <= op.get("finishedAt", ""):
        return "unassessed", NOT_ASSESSED
    images = (status.get("summary") or {}).get("images") or []
    if tag is not None and not any(i.endswith(":" + tag) for i in images):
        return "waiting", f"no pod runs tag {tag} yet"
    health = (status.get("health") or {}).get("status", "Unknown")
    if health == "Degraded":
        message = (status.get("health") or {}).get("message", "")
        return "failed", f"application is Degraded {message}".strip()
    if health == "Healthy":
        return "ready", "Healthy and Synced"
    return "waiting", f"health {health}"


def wait(
    api: Applications,
    name: str,
    tag: str | None,
    request: str,
    timeout: float,
    poll: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
) -> tuple[bool, str]:
    """Poll until the Application is ready with tag (True) or failed / timed out (False)."""
    deadline = clock() + timeout
    last = ""
    while True:
        verdict, why = state(api.get(name), tag, request)
        if why != last:
            log(f"{name}: {why}")
            last = why
        if verdict == "ready":
            return True, why
        if verdict == "failed":
            return False, why
        if clock() >= deadline:
            return False, f"not healthy after {timeout:.0f}s ({why})"
        if verdict == "unassessed":  # else the next full comparison may be minutes away
            api.patch(name, REFRESH_PATCH)
        sleep(poll)


def set_tag(api: Applications, name: str, tag: str | None, **wait_args) -> tuple[bool, str]:
    """Patch the tag in, trigger a sync and wait for the outcome."""
    request = f"{tag}/{uuid.uuid4().hex[:8]}"
    api.patch(name, tag_patch(api.get(name), tag, request))
    return wait(api, name, tag, request, **wait_args)


def rollout(
    api: Applications,
    name: str,
    tag: str,
    timeout: float,
    **wait_args,
) -> str | None:
    """Deploy tag; on failure restore the previous tag and raise RolloutFailed.

    Returns the tag the Application ran before (None if the chart's values chose it).
    """
    previous = image_tag(api.get(name))
    shown = previous or "the chart's default tag"
    try:
        ok, why = set_tag(api, name, tag, timeout=timeout, **wait_args)
        if ok:
            return previous
        back, back_why = set_tag(api, name, previous, timeout=timeout, **wait_args)
    except ClusterError as e:
        # The tag may have changed already: only a person can tell what runs now.
        raise RolloutFailed(f"{name}: lost the cluster while deploying {tag}: {e}",
                            restored=False) from None
    if back:
        raise RolloutFailed(f"{name}: tag {tag} failed ({why}); restored {shown}", restored=True)
    raise RolloutFailed(
        f"{name}: tag {tag} failed ({why}) and restoring {shown} failed too ({back_why})",
        restored=False,
    )


class ClusterApplications:
    """Argo CD Applications through the Kubernetes REST API (in-cluster or via kubectl proxy)."""

    def __init__(self, server: str | None = None, namespace: str = ARGOCD_NAMESPACE) -> None:
        self.namespace = namespace
        self.token: str | None = None
        self.context: ssl.SSLContext | None = None
        if server is None:
            host = os.environ.get("KUBERNETES_SERVICE_HOST")
            if not host:
                raise ClusterError("not inside a cluster: pass --api-server (e.g. kubectl proxy)")
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            server = f"https://{host}:{port}"
            self.token = (SERVICE_ACCOUNT / "token").read_text().strip()
            self.context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
        self.base = server.rstrip("/")

    def _call(self, method: str, name: str, body: dict | None = None) -> dict:
        """One request to the Application named `name`; the JSON answer."""
        url = (f"{self.base}/apis/argoproj.io/v1alpha1/namespaces/{self.namespace}"
               f"/applications/{name}")
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/merge-patch+json"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.context) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:300]
            hint = {404: "does it exist?", 403: "check the service account's RBAC"}.get(e.code, "")
            raise ClusterError(
                f"{method} Application {self.namespace}/{name}: HTTP {e.code} {hint} {detail}",
                transient=e.code >= 500 or e.code == 429,  # 4xx: asking again will not help
            ) from None
        except OSError as e:  # URLError, timeouts, refused connections
            reason = getattr(e, "reason", e)
            raise ClusterError(f"cannot reach the API server {self.base}: {reason}",
                               transient=True) from None

    def get(self, name: str) -> dict:
        """Read an Application."""
        return self._call("GET", name)

    def patch(self, name: str, body: dict) -> dict:
        """Merge-patch an Application."""
        return self._call("PATCH", name, body)
