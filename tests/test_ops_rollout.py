"""Deploying through Argo CD: wait for health, restore the old tag on failure (ops.py deploy)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import ops
import pytest
import rollout

from app.localserver import free_port
from tests.k8s_render import application

REPO = Path(__file__).resolve().parent.parent
NODE_IP = {"name": "service.externalIPs[0]", "value": "192.0.2.11"}


def merge_patch(target: dict, patch: dict) -> dict:
    """Apply a JSON merge patch (RFC 7386) in place, as the Kubernetes API server does."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeArgoCD:
    """One Application plus a controller that moves one step each time it is read.

    behaviour maps an image tag to what its pods do: "healthy" (the default), "stuck"
    (never ready, like an OOM-killed model), "degraded" (progress deadline exceeded) or
    "sync-error" (Argo CD cannot apply the manifests).

    As in Argo CD, reconciledAt moves only on a full comparison: the one right after a sync
    (in the same second as finishedAt), one asked for with the refresh annotation, and the
    periodic one every `full_every` steps.
    """

    def __init__(self, tag: str | None = "staging-1", behaviour: dict | None = None,
                 full_every: int = 150) -> None:
        params = ([{"name": "image.tag", "value": tag}] if tag else []) + [NODE_IP]
        source = {"repoURL": "https://example.org/lab.git", "path": "k8s/gourmetgram",
                  "helm": {"valueFiles": ["values.yaml"], "parameters": params}}
        self.app = {"metadata": {"name": "gourmetgram-staging", "namespace": "argocd"},
                    "spec": {"source": source}, "status": {}}
        self.behaviour = behaviour or {}
        self.patches: list[dict] = []
        self.refreshes = 0
        self.full_every = full_every
        self.reads = 0
        self.clock = 0
        self._settle(self._live_tag())
        self.app["status"].update(health={"status": "Healthy"},
                                  reconciledAt="2026-12-01T00:00:00Z")

    def _live_tag(self) -> str:
        """The tag the pods would run: the parameter, else the values file's default."""
        return rollout.image_tag(self.app) or "staging-default"

    def _settle(self, tag: str) -> None:
        """Argo CD has applied the spec: Synced, compared with it, pods on the new image."""
        status = self.app["status"]
        status["sync"] = {"status": "Synced",
                          "comparedTo": {"source": copy.deepcopy(self.app["spec"]["source"])}}
        status["summary"] = {"images": [f"registry:5000/gourmetgram-app:{tag}"]}
        status["health"] = {"status": "Progressing"}
        self.progress = 0

    def get(self, name: str) -> dict:
        """Read the Application, letting the controller take one step first."""
        assert name == "gourmetgram-staging"
        self.reads += 1
        self._step()
        return copy.deepcopy(self.app)

    def patch(self, name: str, body: dict) -> dict:
        """Merge-patch the Application; a changed spec makes it OutOfSync."""
        assert name == "gourmetgram-staging"
        if body == rollout.REFRESH_PATCH:  # a refresh request leaves the spec alone
            self.refreshes += 1
            merge_patch(self.app, body)
            return copy.deepcopy(self.app)
        self.patches.append(copy.deepcopy(body))
        merge_patch(self.app, body)
        self.app["status"].setdefault("sync", {})["status"] = "OutOfSync"
        return copy.deepcopy(self.app)

    def _step(self) -> None:
        status = self.app["status"]
        op_state = status.get("operationState") or {}
        self.clock += 1
        hours, rest = divmod(self.clock, 3600)
        now = f"2026-12-01T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}Z"
        annotations = self.app["metadata"].get("annotations") or {}
        asked = annotations.pop("argocd.argoproj.io/refresh", None)
        if (asked or self.clock % self.full_every == 0) and op_state.get("phase") != "Running":
            status["reconciledAt"] = now
        if "operation" in self.app:
            status["operationState"] = {"operation": self.app.pop("operation"), "phase": "Running"}
        elif op_state.get("phase") == "Running":
            tag = self._live_tag()
            if self.behaviour.get(tag) == "sync-error":
                op_state.update(phase="Failed", message="one or more objects failed to apply")
            else:
                op_state.update(phase="Succeeded", finishedAt=now)
                status["reconciledAt"] = now  # the full comparison right after a sync
                self._settle(tag)
        elif status["health"]["status"] == "Progressing":
            self.progress += 1
            kind = self.behaviour.get(self._live_tag(), "healthy")
            if kind == "healthy" and self.progress >= 2:
                status["health"] = {"status": "Healthy"}
            elif kind == "degraded" and self.progress >= 2:
                status["health"] = {"status": "Degraded",
                                    "message": "Deployment has exceeded its progress deadline"}


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def deploy(fake: FakeArgoCD, tag: str, timeout: float = 60.0) -> tuple[str | None, FakeClock]:
    """rollout.rollout against the fake, with a fake clock; returns (previous tag, clock)."""
    clock = FakeClock()
    previous = rollout.rollout(fake, "gourmetgram-staging", tag, timeout=timeout, poll=1.0,
                               clock=clock, sleep=clock.sleep, log=lambda _: None)
    return previous, clock


def test_healthy_rollout_sets_the_tag_and_keeps_other_parameters() -> None:
    fake = FakeArgoCD()
    previous, _ = deploy(fake, "staging-2")
    assert previous == "staging-1"
    (patch,) = fake.patches
    request = patch["operation"]["info"][0]["value"]
    assert fake.app["spec"]["source"]["helm"]["parameters"] == [
        NODE_IP, {"name": "image.tag", "value": "staging-2"},
        {"name": "rolloutId", "value": request}]
    assert fake.app["status"]["health"]["status"] == "Healthy"
    assert patch["operation"]["sync"] == {"syncStrategy": {"hook": {}}}


def test_a_sync_assessed_in_its_own_second_gets_a_full_refresh() -> None:
    """Pod events never move reconciledAt; without a refresh the deploy would wait minutes."""
    fake = FakeArgoCD(full_every=10_000)
    previous, clock = deploy(fake, "staging-2", timeout=60)
    assert previous == "staging-1" and fake.refreshes >= 1 and clock.now < 60

    class NoRefresh:  # the same controller, with the refresh requests lost
        def get(self, name: str) -> dict:
            return stuck.get(name)

        def patch(self, name: str, body: dict) -> dict:
            return stuck.app if body == rollout.REFRESH_PATCH else stuck.patch(name, body)

    stuck = FakeArgoCD(full_every=10_000)
    clock = FakeClock()
    ok, why = rollout.set_tag(NoRefresh(), "gourmetgram-staging", "staging-2", timeout=60,
                              poll=1.0, clock=clock, sleep=clock.sleep, log=lambda _: None)
    assert not ok and rollout.NOT_ASSESSED in why


def test_our_sync_carries_the_applications_sync_options() -> None:
    """Argo CD reads sync options from the operation, so the patch must repeat the spec's."""
    app = application("staging")
    operation = rollout.tag_patch(app, "staging-2", "staging-2/test")["operation"]
    assert operation["sync"]["syncOptions"] == app["spec"]["syncPolicy"]["syncOptions"]
    assert {"ServerSideApply=true", "CreateNamespace=true"} <= set(
        operation["sync"]["syncOptions"])
    assert operation["sync"]["prune"] is True


def test_a_stale_degraded_status_of_the_same_tag_is_redeployed() -> None:
    # The first deploy: the Application waited, Degraded, for an image that did not exist
    # yet; the tag does not change, but the fresh rolloutId makes new pods that pull it.
    fake = FakeArgoCD(tag="staging-1")
    fake.app["status"]["health"] = {"status": "Degraded",
                                    "message": "Deployment has exceeded its progress deadline"}
    previous, _ = deploy(fake, "staging-1")
    assert previous == "staging-1"
    assert fake.app["status"]["health"]["status"] == "Healthy"
    assert len(fake.patches) == 1


def test_health_is_not_trusted_before_argo_cd_assessed_the_sync() -> None:
    fake = FakeArgoCD()
    request = "staging-2/test"
    fake.patch("gourmetgram-staging", rollout.tag_patch(fake.app, "staging-2", request))
    fake.app["status"].update(
        operationState={"phase": "Succeeded", "finishedAt": "2026-12-01T00:00:09Z",
                         "operation": fake.app.pop("operation")},
        reconciledAt="2026-12-01T00:00:09Z",  # the same second: maybe still the old pods
        sync={"status": "Synced",
              "comparedTo": {"source": copy.deepcopy(fake.app["spec"]["source"])}},
        summary={"images": ["registry:5000/gourmetgram-app:staging-2"]},
        health={"status": "Degraded", "message": "left from before"})
    verdict, why = rollout.state(fake.app, "staging-2", request)
    assert verdict == "unassessed" and "not assessed" in why
    fake.app["status"]["reconciledAt"] = "2026-12-01T00:00:10Z"
    assert rollout.state(fake.app, "staging-2", request)[0] == "failed"


def test_a_sync_started_by_argo_cd_itself_counts_when_it_applied_our_spec() -> None:
    # Automated sync may carry our change out before our own operation is picked up.
    fake = FakeArgoCD()
    request = "staging-2/test"
    fake.patch("gourmetgram-staging", rollout.tag_patch(fake.app, "staging-2", request))
    fake.app.pop("operation")
    fake.app["status"].update(
        operationState={"phase": "Succeeded", "finishedAt": "2026-12-01T00:00:09Z",
                        "operation": {"initiatedBy": {"automated": True}}},
        reconciledAt="2026-12-01T00:00:12Z",
        sync={"status": "Synced",
              "comparedTo": {"source": copy.deepcopy(fake.app["spec"]["source"])}},
        summary={"images": ["registry:5000/gourmetgram-app:staging-2"]},
        health={"status": "Healthy"})
    assert rollout.state(fake.app, "staging-2", request) == ("ready", "Healthy and Synced")


def test_the_old_healthy_status_is_not_mistaken_for_the_new_tag() -> None:
    fake = FakeArgoCD()
    request = "staging-2/test"
    fake.patch("gourmetgram-staging", rollout.tag_patch(fake.app, "staging-2", request))
    # Right after the patch the status still says Healthy + Synced, for staging-1.
    fake.app["status"]["sync"]["status"] = "Synced"
    verdict, why = rollout.state(fake.app, "staging-2", request)
    assert verdict == "waiting" and "not started the sync" in why
    # Even once the sync is reported done, the compared source must carry the new tag.
    fake.app["status"]["operationState"] = {"phase": "Succeeded",
                                            "operation": fake.app.pop("operation")}
    verdict, why = rollout.state(fake.app, "staging-2", request)
    assert verdict == "waiting" and "not applied tag staging-2" in why


def test_an_older_failed_sync_is_not_blamed_on_this_request() -> None:
    fake = FakeArgoCD()
    fake.app["status"]["operationState"] = {
        "phase": "Failed", "message": "old",
        "operation": {"info": [{"name": rollout.REQUEST_INFO, "value": "earlier"}]}}
    assert rollout.state(fake.app, "staging-1", "now")[0] != "failed"
    assert rollout.state(fake.app, "staging-1", "earlier")[0] == "failed"


def test_a_model_that_never_gets_ready_is_rolled_back_after_the_timeout() -> None:
    fake = FakeArgoCD(behaviour={"staging-2": "stuck"})
    with pytest.raises(rollout.RolloutFailed) as failure:
        deploy(fake, "staging-2", timeout=30)
    assert failure.value.restored
    assert "not healthy after 30s" in str(failure.value)
    assert "restored staging-1" in str(failure.value)
    assert rollout.image_tag(fake.app) == "staging-1"
    assert fake.app["status"]["health"]["status"] == "Healthy"
    assert [rollout.image_tag({"spec": p["spec"]}) for p in fake.patches] == [
        "staging-2", "staging-1"]


def test_a_degraded_app_fails_fast_without_waiting_for_the_timeout() -> None:
    fake = FakeArgoCD(behaviour={"staging-2": "degraded"})
    with pytest.raises(rollout.RolloutFailed, match="Degraded") as failure:
        deploy(fake, "staging-2", timeout=600)
    assert failure.value.restored
    assert fake.reads < 20  # a handful of polls, not 600 seconds' worth


def test_a_sync_error_fails_and_restores() -> None:
    fake = FakeArgoCD(behaviour={"staging-2": "sync-error"})
    with pytest.raises(rollout.RolloutFailed, match="sync failed: one or more objects"):
        deploy(fake, "staging-2")
    assert rollout.image_tag(fake.app) == "staging-1"


def test_when_the_restore_fails_too_a_person_is_needed() -> None:
    fake = FakeArgoCD(behaviour={"staging-2": "stuck", "staging-1": "stuck"})
    with pytest.raises(rollout.RolloutFailed, match="restoring staging-1 failed too") as failure:
        deploy(fake, "staging-2", timeout=10)
    assert not failure.value.restored


def test_without_a_tag_parameter_the_restore_removes_the_override() -> None:
    fake = FakeArgoCD(tag=None, behaviour={"staging-2": "stuck"})
    with pytest.raises(rollout.RolloutFailed, match="restored the chart's default tag"):
        deploy(fake, "staging-2", timeout=10)
    kept = fake.app["spec"]["source"]["helm"]["parameters"]
    assert [p for p in kept if p["name"] != "rolloutId"] == [NODE_IP]
    assert fake.app["status"]["summary"]["images"][0].endswith(":staging-default")


def test_an_application_without_a_single_source_is_refused() -> None:
    with pytest.raises(rollout.ClusterError, match="multi-source"):
        rollout.image_tag({"metadata": {"name": "x"}, "spec": {"sources": []}})


# ---- the HTTP client and the command line, against a loopback API server ---------------

class FakeApiServer:
    """The Applications endpoint of a Kubernetes API server, on loopback, backed by FakeArgoCD."""

    def __init__(self, fake: FakeArgoCD) -> None:
        self.fake = fake
        self.requests: list[tuple[str, str, dict]] = []
        self.fail_with: int | None = None  # answer every request with this status when set
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _name(self) -> str | None:
                prefix = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/"
                name = self.path.removeprefix(prefix)
                return name if self.path.startswith(prefix) and name == "gourmetgram-staging" \
                    else None

            def do_GET(self) -> None:
                outer.requests.append(("GET", self.path, dict(self.headers)))
                name = self._name()
                if outer.fail_with:
                    self._reply(outer.fail_with, {"kind": "Status", "code": outer.fail_with})
                elif name is None:
                    self._reply(404, {"kind": "Status", "reason": "NotFound"})
                else:
                    self._reply(200, outer.fake.get(name))

            def do_PATCH(self) -> None:
                outer.requests.append(("PATCH", self.path, dict(self.headers)))
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.headers["Content-Type"] != "application/merge-patch+json":
                    self._reply(415, {"reason": "UnsupportedMediaType"})
                else:
                    self._reply(200, outer.fake.patch(self._name(), body))

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    """A loopback API server whose staging Application has staging-2 stuck forever."""
    with FakeApiServer(FakeArgoCD(behaviour={"staging-2": "stuck"})) as server:
        yield server


def test_http_client_reads_and_merge_patches(api: FakeApiServer) -> None:
    client = rollout.ClusterApplications(server=api.url)
    client.token = "secret-token"
    assert rollout.image_tag(client.get("gourmetgram-staging")) == "staging-1"
    client.patch("gourmetgram-staging", {"metadata": {"labels": {"a": "b"}}})
    (_, path, headers), (method, _, patch_headers) = api.requests
    assert path == "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/gourmetgram-staging"
    assert headers["Authorization"] == "Bearer secret-token"
    assert method == "PATCH"
    assert patch_headers["Content-Type"] == "application/merge-patch+json"
    assert api.fake.app["metadata"]["labels"] == {"a": "b"}


def test_http_client_explains_a_missing_application(api: FakeApiServer) -> None:
    with pytest.raises(rollout.ClusterError, match="HTTP 404 does it exist"):
        rollout.ClusterApplications(server=api.url).get("gourmetgram-nowhere")


def test_http_client_outside_a_cluster_needs_a_server(monkeypatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(rollout.ClusterError, match="--api-server"):
        rollout.ClusterApplications()


def run_ops(*args: str) -> subprocess.CompletedProcess:
    """python train/ops.py ARGS in a new process, as a workflow step runs it."""
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'train'}")
    return subprocess.run([sys.executable, str(REPO / "train" / "ops.py"), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_ops_deploy_as_a_workflow_step_runs_it(api: FakeApiServer) -> None:
    done = run_ops("deploy", "--env", "staging", "--tag", "staging-3", "--timeout", "30",
                   "--poll", "0.05", "--api-server", api.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "staging-3"
    assert "gourmetgram-staging runs staging-3 (before: staging-1)" in done.stderr


def test_ops_deploy_exit_codes(api: FakeApiServer, capsys: pytest.CaptureFixture) -> None:
    fast = ["--poll", "0.05", "--api-server", api.url]
    stuck = ops.main(["deploy", "--env", "staging", "--tag", "staging-2", "--timeout", "1", *fast])
    assert stuck == ops.RESTORED == 3
    assert "restored staging-1" in capsys.readouterr().err
    assert rollout.image_tag(api.fake.app) == "staging-1"

    away = f"http://127.0.0.1:{free_port()}"
    assert ops.main(["deploy", "--env", "staging", "--tag", "staging-4",
                     "--api-server", away]) == ops.UNREACHABLE == 5
    assert "cannot reach the API server" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        ops.main(["deploy", "--env", "qa", "--tag", "qa-1"])
    assert usage.value.code == ops.USAGE == 2


def test_ops_retries_only_what_asking_again_can_fix(api: FakeApiServer, capsys) -> None:
    """A missing Application is final (exit 1); an API server error is worth a retry (5)."""
    fast = ["--poll", "0.05", "--api-server", api.url]
    missing = ops.main(["deploy", "--env", "canary", "--tag", "canary-3", *fast])
    assert missing == ops.FAILED == 1
    assert "HTTP 404 does it exist?" in capsys.readouterr().err
    api.fail_with = 503
    busy = ops.main(["deploy", "--env", "staging", "--tag", "staging-3", *fast])
    assert busy == ops.UNREACHABLE == 5
    assert "HTTP 503" in capsys.readouterr().err
    assert rollout.image_tag(api.fake.app) == "staging-1"
