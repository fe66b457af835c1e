"""A small stand-in for the cluster, to play the lab's notebooks in order (tests/test_story.py).

It runs the WorkflowTemplates of workflows/ as Argo would order them: steps in sequence,
`when` conditions decided by govaluate (tests/whencheck), every `{{...}}` rendered by the
expr checker (tests/argo_expr.py), workflow-level mutexes held for a workflow's whole run, a
`resource` step that creates a Workflow starting it in the background. Each leaf template
runs the command its YAML gives, here: ops.py against the real MLflow server, flow.py for
training, the staging suite and live_users.py against real gunicorn apps. What only a
cluster has is played by this module, and said so in each handler: BuildKit (the image is
the folder `ops.py download` fills), crane (a copy of that folder under the new tag), Argo CD
(`ops.py deploy` starts the environment's app from the image and keeps the old one when the
new one does not start), Traefik (a 90/10 router) and Kubernetes pod discovery (a targets
file Prometheus reads).
"""

from __future__ import annotations

import http.client
import io
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import ops
import yaml

from app.localserver import LocalServer
from tests.argo_expr import render, should_execute
from tests.cluster_record import templates
from tests.prometheus_server import pod_target

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "workflows"
REGISTRY = "registry.story:5000"
CANARY_EVERY = 10  # the HTTPRoute's 90/10 split: every tenth live request goes to canary


def now() -> str:
    """A Kubernetes timestamp with microseconds, so that creation order is total."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def render_all(obj: Any, env: dict[str, str]) -> Any:
    """obj with every string that holds a `{{` tag rendered by Argo's rules."""
    strings: list[str] = []

    def collect(o: Any) -> None:
        if isinstance(o, str) and "{{" in o:
            strings.append(o)
        elif isinstance(o, dict):
            for v in o.values():
                collect(v)
        elif isinstance(o, list):
            for v in o:
                collect(v)

    collect(obj)
    results = dict(zip(strings, render([(s, env) for s in strings]), strict=True))
    for s, r in results.items():
        if r.error:
            raise StepError(f"cannot render {s!r}: {r.error}")

    def rebuild(o: Any) -> Any:
        if isinstance(o, str) and o in results:
            return results[o].value
        if isinstance(o, dict):
            return {k: rebuild(v) for k, v in o.items()}
        if isinstance(o, list):
            return [rebuild(v) for v in o]
        return o

    return rebuild(obj)


class StepError(Exception):
    """A step failed; the message is what Argo would show on its node."""


@dataclass
class Workflow:
    """One submitted workflow, recorded in the shape `kubectl get workflow -o json` gives."""

    name: str
    template: str
    parameters: dict[str, str]
    created: str = field(default_factory=now)
    phase: str = "Pending"
    message: str = ""
    started: str | None = None
    finished: str | None = None
    nodes: list[dict] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def node(self, name: str) -> dict | None:
        """The last node of a step name (displayName), if that step ran or was skipped."""
        found = [n for n in self.nodes if n["displayName"] == name]
        return found[-1] if found else None

    def as_json(self) -> dict:
        """The Workflow object as the Kubernetes API would return it."""
        return {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": self.name, "namespace": "argo",
                         "creationTimestamp": self.created,
                         "labels": {"workflows.argoproj.io/workflow-template": self.template}},
            "spec": {"workflowTemplateRef": {"name": self.template},
                     "arguments": {"parameters": [{"name": k, "value": v}
                                                  for k, v in self.parameters.items()]}},
            "status": {"phase": self.phase, "message": self.message,
                       "startedAt": self.started, "finishedAt": self.finished,
                       "nodes": {f"{self.name}-{i}": n for i, n in enumerate(self.nodes)}},
        }


Handler = Callable[["StoryCluster", Workflow, dict, dict[str, str]], tuple[str, dict[str, str]]]


class StoryCluster:
    """The lab's cluster as far as the lifecycle sees it, on loopback."""

    def __init__(self, root: Path, mlflow_uri: str, login: tuple[str, str], sample_data: Path,
                 train_env: dict[str, str], food11_archive_url: str = "",
                 food11_counts: str = "", staging_flags: tuple[str, ...] = ()) -> None:
        self.root = root
        self.templates = templates()
        self.config = {"mlflow-uri": mlflow_uri, "registry": REGISTRY,
                       "train-image": f"{REGISTRY}/gourmetgram-train:current",
                       "repo-url": "https://example.invalid/story.git", "repo-revision": "main"}
        self.secrets = {"mlflow-credentials": {"username": login[0], "password": login[1]}}
        self.paths = {"/data/food11-sample": str(sample_data),
                      "/mnt/food11-data": str(root / "food11-volume")}
        self.train_env = train_env
        self.food11_archive_url, self.food11_counts = food11_archive_url, food11_counts
        self.staging_flags = staging_flags
        self.images: dict[str, Path] = {}  # gourmetgram-app:<tag> -> the built folder
        self.apps: dict[str, tuple[str, LocalServer]] = {}  # environment -> (tag, app)
        self.workflows: list[Workflow] = []
        self.mutexes: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self.lock = threading.RLock()
        self.names = itertools.count(1)
        self.targets_file = root / "targets.json"
        self.targets_file.write_text("[]")
        self.router = LiveRouter(self)

    # ---- the API a notebook cell uses ------------------------------------------------------

    def submit(self, template: str, **parameters: str) -> Workflow:
        """`argo submit --from workflowtemplate/<template> -p k=v ...`: start it, return it."""
        spec = self.templates[template]["spec"]
        declared = {p["name"]: p for p in spec.get("arguments", {}).get("parameters", [])}
        unknown = set(parameters) - set(declared)
        if unknown:
            raise ValueError(f"{template} declares no parameter {sorted(unknown)}")
        values = {}
        for name, p in declared.items():
            value = parameters.get(name, p.get("value"))
            if value is None:
                raise ValueError(f"{template}: parameter {name} needs a value")
            if "enum" in p and str(value) not in [str(e) for e in p["enum"]]:
                raise ValueError(f"{template}: {name}={value} is not one of {p['enum']}")
            values[name] = str(value)
        wf = Workflow(f"{template}-{next(self.names):05d}", template, values)
        with self.lock:
            self.workflows.append(wf)
        threading.Thread(target=self._run, args=(wf,), daemon=True, name=wf.name).start()
        return wf

    def wait(self, wf: Workflow, timeout: float = 600.0) -> str:
        """Block until the workflow ends (tools/watch_workflow.py's job); return its phase."""
        if not wf.done.wait(timeout):
            raise TimeoutError(f"{wf.name} still {wf.phase} after {timeout:.0f} s")
        return wf.phase

    def listing(self) -> dict:
        """`kubectl get workflows -n argo -o json`."""
        with self.lock:
            return {"kind": "List", "items": [w.as_json() for w in self.workflows]}

    def of(self, template: str) -> list[Workflow]:
        """The workflows of a template, oldest first."""
        with self.lock:
            return [w for w in self.workflows if w.template == template]

    def serving(self, env: str) -> str | None:
        """What `curl http://FLOATING_IP:<port>/version` says: the version env's app serves."""
        if env not in self.apps:
            return None
        from app.client import Client

        reply = Client(self.apps[env][1].url).get("/version")
        return str(reply.json()["model_version"]) if reply.status == 200 else None

    def stop(self) -> None:
        """Stop every app and the router; wait a little for workflows still running."""
        for wf in list(self.workflows):
            wf.done.wait(60)
        self.router.stop()
        for _, app in self.apps.values():
            app.stop()

    # ---- running a workflow ------------------------------------------------------------

    def _run(self, wf: Workflow) -> None:
        spec = self.templates[wf.template]["spec"]
        held = [self.mutexes[m["name"]]
                for m in spec.get("synchronization", {}).get("mutexes", [])]
        for lock in held:
            lock.acquire()  # Argo keeps the workflow Pending until it holds the lock
        try:
            wf.phase, wf.started = "Running", now()
            scope = {f"workflow.parameters.{k}": v for k, v in wf.parameters.items()}
            scope["workflow.name"] = wf.name
            # The entrypoint takes its inputs from the workflow's arguments.
            self._call(wf, wf.template, spec["entrypoint"], wf.parameters, scope)
            wf.phase = "Succeeded"
        except StepError as e:
            wf.phase, wf.message = "Failed", str(e)
        except Exception as e:  # noqa: BLE001 - a bug in this module shows as an Error phase
            wf.phase, wf.message = "Error", f"{type(e).__name__}: {e}"
        finally:
            wf.finished = now()
            for lock in reversed(held):
                lock.release()
            wf.done.set()

    def _template(self, owner: str, name: str) -> dict:
        for t in self.templates[owner]["spec"]["templates"]:
            if t["name"] == name:
                return t
        raise StepError(f"template {name} not found in {owner}")

    def _inputs(self, template: dict, given: dict[str, str]) -> dict[str, str]:
        """The template's input parameters: given, else their default or ConfigMap value."""
        values = {}
        for p in template.get("inputs", {}).get("parameters", []):
            if p["name"] in given:
                values[p["name"]] = given[p["name"]]
            elif "value" in p:
                values[p["name"]] = str(p["value"])
            elif "configMapKeyRef" in p.get("valueFrom", {}):
                values[p["name"]] = self.config[p["valueFrom"]["configMapKeyRef"]["key"]]
            else:
                raise StepError(f"input {p['name']} of {template['name']} has no value")
        return values

    def _call(self, wf: Workflow, owner: str, name: str, given: dict[str, str],
              scope: dict[str, str]) -> dict[str, str]:
        """Run template owner/name with its inputs; return its outputs (parameters, result)."""
        template = self._template(owner, name)
        inputs = self._inputs(template, given)
        local = {k: v for k, v in scope.items() if k.startswith("workflow.")}
        local.update({f"inputs.parameters.{k}": v for k, v in inputs.items()})
        if "steps" in template:
            return self._steps(wf, owner, template, local)
        rendered = render_all({k: v for k, v in template.items() if k != "steps"}, local)
        handler = HANDLERS.get((owner, name))
        if handler is None:
            raise StepError(f"the story has no stand-in for {owner}/{name}")
        result, outputs = handler(self, wf, rendered, inputs)
        return {"result": result, **outputs}

    def _steps(self, wf: Workflow, owner: str, template: dict,
               local: dict[str, str]) -> dict[str, str]:
        for group in template["steps"]:
            for step in group:
                raw = {"when": step.get("when", ""),
                       "arguments": step.get("arguments", {})}
                step_args = render_all(raw, local)
                node = {"displayName": step["name"], "type": "Pod", "phase": "Running",
                        "startedAt": now(), "templateName": step.get("template", ""),
                        "outputs": {"parameters": []}}
                wf.nodes.append(node)
                [(run, error)] = should_execute([" ".join(step_args["when"].split())])
                if error:
                    node.update(phase="Error", message=error)
                    raise StepError(error)
                if not run:
                    node.update(phase="Skipped",
                                message=f"when '{step_args['when']}' evaluated false")
                    continue
                given = {p["name"]: str(p["value"])
                         for p in step_args["arguments"].get("parameters", [])}
                if "templateRef" in step:
                    target = (step["templateRef"]["name"], step["templateRef"]["template"])
                else:
                    target = (owner, step["template"])
                try:
                    outputs = self._call(wf, *target, given, local)
                except StepError as e:
                    node.update(phase="Failed", message=str(e), finishedAt=now())
                    raise
                node.update(phase="Succeeded", finishedAt=now())
                node["outputs"]["parameters"] = [{"name": k, "value": v}
                                                 for k, v in outputs.items() if k != "result"]
                local[f"steps.{step['name']}.outputs.result"] = outputs.get("result", "")
                for k, v in outputs.items():
                    local[f"steps.{step['name']}.outputs.parameters.{k}"] = v
        return {}

    # ---- what the cluster does -----------------------------------------------------------

    def env_of(self, container: dict) -> dict[str, str]:
        """A container's environment, ConfigMap and Secret references resolved."""
        env = {}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = self.local_path(str(item["value"]))
            elif "configMapKeyRef" in item["valueFrom"]:
                env[item["name"]] = self.config[item["valueFrom"]["configMapKeyRef"]["key"]]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.secrets[ref["name"]][ref["key"]]
        return env

    def local_path(self, value: str) -> str:
        """A path inside a pod, mapped to where this machine keeps it."""
        for pod_path, here in self.paths.items():
            if value == pod_path or value.startswith(pod_path + "/"):
                return here + value[len(pod_path):]
        return value

    def run_ops(self, argv: list[str]) -> tuple[int, str, str]:
        """`python ops.py ARGS` in this process (the code the ops step runs), output captured."""
        out, err = io.StringIO(), io.StringIO()
        code = ops.main(argv, out=out, err=err)
        return code, out.getvalue().strip(), err.getvalue()

    def deploy(self, env: str, tag: str, timeout: float) -> tuple[int, str]:
        """Argo CD's part of `ops.py deploy`: run the image in env, keep the old app if not."""
        image = self.images.get(tag)
        if image is None:
            return ops.REFUSED, f"image gourmetgram-app:{tag} is not in the registry"
        log = self.root / "logs" / f"{env}-{tag}-{time.monotonic_ns()}.log"
        log.parent.mkdir(exist_ok=True)
        app = LocalServer(image / "model.onnx", image / "versions.txt", log, WORKERS="1")
        try:
            app.start(timeout=timeout)
        except (RuntimeError, OSError) as e:
            app.stop()
            return ops.RESTORED, f"{tag} never became healthy ({e}); the previous image runs"
        with self.lock:
            old = self.apps.get(env)
            self.apps[env] = (tag, app)
            self._write_targets()
        if old:
            old[1].stop()
        return ops.OK, tag

    def _write_targets(self) -> None:
        """Pod discovery: one Prometheus target per running app, with the pod's labels."""
        targets = [pod_target(f"127.0.0.1:{app.port}", env, tag, f"gourmetgram-app-{env}")
                   for env, (tag, app) in self.apps.items()]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(targets))
        tmp.replace(self.targets_file)


# ---- the leaf templates -----------------------------------------------------------------

def _ops_step(cluster: StoryCluster, wf: Workflow, t: dict, inputs: dict[str, str]):
    """gourmetgram-ops: `sh -c 'set -f; exec python ops.py $ARGS'`, retried on exit 5."""
    assert t["container"]["command"][-1].endswith("python ops.py $ARGS"), t["container"]
    [args] = [e["value"] for e in t["container"]["env"] if e["name"] == "ARGS"]
    argv = args.split()  # $ARGS unquoted: split on blanks, no globbing (set -f)
    retries = int(t.get("retryStrategy", {}).get("limit", 0))
    for _ in range(retries + 1):
        if argv[0] == "deploy":
            flags = dict(zip(argv[1::2], argv[2::2], strict=True))
            code, text = cluster.deploy(flags["--env"], flags["--tag"],
                                        float(flags.get("--timeout", ops.DEPLOY_TIMEOUT_S)))
            out, err = (text, "") if code == ops.OK else ("", text)
        else:
            code, out, err = cluster.run_ops(argv)
        if code != ops.UNREACHABLE:
            break
    if code != ops.OK:
        raise StepError(f"ops.py {argv[0]} exited {code}: {err.strip()}")
    return out, {}


def _train_image(cluster: StoryCluster, wf: Workflow, t: dict, inputs: dict[str, str]):
    """build-train-image/image: the story's training image is this checkout, always present."""
    return "", {"image": cluster.config["train-image"], "exists": "true"}


def _nothing_to_build(cluster: StoryCluster, wf: Workflow, t: dict, inputs: dict[str, str]):
    """build-train-image/build and mark-current: the image exists, nothing to do."""
    return "", {}


def _prepare_data(cluster: StoryCluster, wf: Workflow, t: dict, inputs: dict[str, str]):
    """prepare-data/prepare: food11_data.py on the story's volume, from a loopback archive."""
    command = [cluster.local_path(a) for a in t["container"]["command"]]
    extra = ["--url", cluster.food11_archive_url, "--expect-counts", cluster.food11_counts]
    return _run(command + extra, cwd=REPO / "train", env={}, what="prepare-data"), {}


def _train(cluster: StoryCluster, wf: Workflow, t: dict, inputs: dict[str, str]):
    """train-model/train: flow.py as the container runs it; the version file is its output."""
    container = t["container"]
    version_file = cluster.root / f"{wf.name}-model_version"
    env = {**cluster.env_of(container), **cluster.train_env,
           "MODEL_VERSION_FILE": str(version_file)}
    # Which claim the pod mounts is tests/pod_spec.py's (podSpecPatch); here, the path.
    _run(container["command"], cwd=REPO / "train", env=env, what="train")
    [output] = t["outputs"]["parameters"]
    value = version_file.read_text().strip() if version_file.exists() else ""
    return "", {output["name"]: value or output["valueFrom"].get("default", "")}


def _start_build(cluster: StoryCluster, wf: Workflow, t: dict, inputs: dict[str, str]):
    """A `resource` step that creates a Workflow: it starts, and this step does not wait."""
    assert t["resource"]["action"] == "create", t["resource"]
    manifest = yaml.safe_load(t["resource"]["manifest"])
    params = {p["name"]: p["value"] for p in manifest["spec"]["arguments"]["parameters"]}
    started = cluster.submit(manifest["spec"]["workflowTemplateRef"]["name"], **params)
    return started.name, {}


def _build_app_image(cluster: StoryCluster, wf: Workflow, t: dict, inputs: dict[str, str]):
    """build-container-image/build: the init container's download; the folder is the image."""
    [init] = t["initContainers"]
    argv = init["command"]
    assert argv[:2] == ["python", "ops.py"], argv
    [image] = [e["value"] for e in t["container"]["env"] if e["name"] == "IMAGE"]
    tag = image.rsplit(":", 1)[1]  # the tag BuildKit pushes: $IMAGE
    folder = cluster.root / "registry" / tag
    args = argv[2:]
    args[args.index("--out") + 1] = str(folder)
    code, _, err = cluster.run_ops(args)
    if code != ops.OK:
        raise StepError(f"download-model exited {code}: {err.strip()}")
    cluster.images[tag] = folder
    return "", {}


def _staging_suite(cluster: StoryCluster, wf: Workflow, t: dict, inputs: dict[str, str]):
    """test-staging/staging-suite: the suite, pointed at the staging app's address here."""
    command = list(t["container"]["command"])
    command[command.index("--url") + 1] = cluster.apps["staging"][1].url
    return _run(command + list(cluster.staging_flags), cwd=REPO, env={}, what="staging-suite"), {}


def _retag(cluster: StoryCluster, wf: Workflow, t: dict, inputs: dict[str, str]):
    """promote-model/retag: `crane tag SRC NEW` gives the same image a second tag."""
    args = t["container"]["args"]
    assert args[0] == "tag", args
    source, new = args[-2].rsplit(":", 1)[1], args[-1]
    if source not in cluster.images:
        raise StepError(f"crane: gourmetgram-app:{source} not found")
    cluster.images[new] = cluster.images[source]
    return "", {}


def _live_users(cluster: StoryCluster, wf: Workflow, t: dict, inputs: dict[str, str]):
    """live-users/play: live_users.py against the live route (the router below)."""
    command = list(t["container"]["command"])
    command[command.index("--url") + 1] = cluster.router.url
    return _run(command, cwd=REPO / "train", env={}, what="live-users"), {}


HANDLERS: dict[tuple[str, str], Handler] = {
    ("gourmetgram-ops", "ops"): _ops_step,
    ("build-train-image", "image"): _train_image,
    ("build-train-image", "build"): _nothing_to_build,
    ("build-train-image", "mark-current"): _nothing_to_build,
    ("prepare-data", "prepare"): _prepare_data,
    ("train-model", "train"): _train,
    ("train-model", "start-build"): _start_build,
    ("build-container-image", "build"): _build_app_image,
    ("test-staging", "staging-suite"): _staging_suite,
    ("promote-model", "retag"): _retag,
    ("live-users", "play"): _live_users,
}


def _run(command: list[str], cwd: Path, env: dict[str, str], what: str) -> str:
    """A container's command as a process here (python is this interpreter); its stdout."""
    argv = [sys.executable if command[0] == "python" else command[0], *command[1:]]
    pythonpath = os.pathsep.join([str(REPO), str(REPO / "train")])
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PYTHONPATH": pythonpath, **env})
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise StepError(f"{what} exited {result.returncode}:\n" + "\n".join(tail))
    return result.stdout


class LiveRouter:
    """Traefik's live route: every CANARY_EVERY-th request to canary, the rest to production."""

    def __init__(self, cluster: StoryCluster) -> None:
        counter = itertools.count()

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                env = "canary" if next(counter) % CANARY_EVERY == CANARY_EVERY - 1 else "production"
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = urllib.parse.urlsplit(cluster.apps[env][1].url)
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for k, v in reply.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = _forward  # noqa: N815 - http.server's names

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()
