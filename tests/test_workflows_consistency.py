"""The workflows agree with the rest of the repository: settings, charts, Argo CD, RBAC, images.

(Service names and the MLflow address in workflows/ are checked by test_consistency_k8s.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import image_tag
import rollout
import yaml

from tests import argo_validate as validate
from tests.k8s_render import ENVIRONMENTS, application, load_yaml

REPO = Path(__file__).resolve().parent.parent
DOCS = list(validate.documents(REPO / "workflows"))
CONFIGMAP = "gourmetgram-config"
# The keys of CONFIGMAP that ansible/post_k8s writes and the workflows read.
CONFIG_KEYS = {"registry", "train-image", "mlflow-uri", "repo-url", "repo-revision"}


def config_map_refs() -> set[tuple[str, str]]:
    """(ConfigMap, key) pairs the workflows read, through Argo parameters or pod env."""
    refs = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("configMapKeyRef")
            if ref:
                refs.add((ref["name"], ref["key"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for _, doc in DOCS:
        walk(doc)
    return refs


def written_config_map() -> dict:
    """The gourmetgram-config ConfigMap that the post_k8s playbook writes."""
    play = load_yaml(REPO / "ansible" / "post_k8s" / "post_k8s_configure.yml")
    for task in (t for p in play for t in p.get("tasks", [])):
        definition = (task.get("kubernetes.core.k8s") or {}).get("definition") or {}
        if definition.get("kind") == "ConfigMap" and definition["metadata"]["name"] == CONFIGMAP:
            return definition
    raise AssertionError(f"post_k8s_configure.yml does not write the ConfigMap {CONFIGMAP}")


def test_workflows_read_only_keys_the_playbook_writes() -> None:
    cm = written_config_map()
    assert cm["metadata"]["namespace"] == "argo"
    # Without this label Argo refuses valueFrom.configMapKeyRef in input parameters.
    assert cm["metadata"]["labels"]["workflows.argoproj.io/configmap-type"] == "Parameter"
    refs = config_map_refs()
    assert {name for name, _ in refs} == {CONFIGMAP}
    assert {key for _, key in refs} == set(cm["data"]) == CONFIG_KEYS


def test_the_lifecycle_image_is_the_tag_that_training_moves() -> None:
    """The ConfigMap names the tag that build-train-image's mark-current gives the CPU image."""
    image = written_config_map()["data"]["train-image"]
    repository, _, tag = image.rpartition(":")
    assert repository == f"{{{{ cluster_registry }}}}/{image_tag.REPOSITORY}"
    (mark,) = [t for _, doc in DOCS if doc["metadata"]["name"] == "build-train-image"
               for t in doc["spec"]["templates"] if t["name"] == "mark-current"]
    assert mark["container"]["args"] == ["tag", "--insecure", "{{inputs.parameters.image}}", tag]
    # No fixed tag is pinned any more: the content decides (train/image_tag.py).
    assert "train_image_tag" not in load_yaml(REPO / "versions.yml")


def test_the_build_pushes_where_the_chart_pulls_from() -> None:
    group_vars = load_yaml(REPO / "ansible" / "group_vars" / "all.yml")
    kind_inventory = (REPO / "ansible" / "inventory-kind.yml").read_text()
    kind_registry = re.search(r"cluster_registry:\s*(\S+)", kind_inventory).group(1)
    chart = REPO / "k8s" / "gourmetgram"
    cloud_repo = load_yaml(chart / "values.yaml")["image"]["repository"]
    kind_repo = load_yaml(chart / "values-kind.yaml")["image"]["repository"]
    # The workflows name the app image {{registry}}/gourmetgram-app:<tag>.
    assert cloud_repo == f"{group_vars['cluster_registry']}/gourmetgram-app"
    assert kind_repo == f"{kind_registry}/gourmetgram-app"


def test_rollout_finds_and_patches_each_environment_application() -> None:
    for env in ENVIRONMENTS:
        app = application(env)
        assert app["metadata"]["name"] == rollout.app_name(env)
        assert app["metadata"]["namespace"] == rollout.ARGOCD_NAMESPACE
        values = load_yaml(REPO / "k8s" / "gourmetgram" / f"values-{env}.yaml")
        assert rollout.image_tag(app) == values["image"]["tag"]
        patch = rollout.tag_patch(app, f"{env}-7", "r")
        before = [p for p in app["spec"]["source"]["helm"]["parameters"]
                  if p["name"] not in (rollout.TAG_PARAMETER, rollout.ROLLOUT_PARAMETER)]
        after = patch["spec"]["source"]["helm"]["parameters"]
        assert after == [*before, {"name": rollout.TAG_PARAMETER, "value": f"{env}-7"},
                         {"name": rollout.ROLLOUT_PARAMETER, "value": "r"}]
    # The chart takes the rollout id as a value of its own (a pod annotation).
    defaults = load_yaml(REPO / "k8s" / "gourmetgram" / "values.yaml")
    assert rollout.ROLLOUT_PARAMETER in defaults


def rbac_rules(namespace: str, subject: str) -> list[dict]:
    """Rules that Roles in a namespace grant to a service account, in workflow-rbac.yaml."""
    path = REPO / "ansible" / "post_k8s" / "manifests" / "workflow-rbac.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    roles = {d["metadata"]["name"]: d for d in docs
             if d["kind"] == "Role" and d["metadata"]["namespace"] == namespace}
    rules = []
    for binding in (d for d in docs if d["kind"] == "RoleBinding"):
        if binding["metadata"]["namespace"] == namespace and any(
                s["name"] == subject for s in binding["subjects"]):
            rules += roles[binding["roleRef"]["name"]]["rules"]
    return rules


def allowed(rules: list[dict], group: str, resource: str, verb: str) -> bool:
    """Whether any rule grants verb on resource."""
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
               for r in rules)


def test_workflow_service_account_may_do_what_the_steps_do() -> None:
    argocd = rbac_rules(rollout.ARGOCD_NAMESPACE, "argo-workflow")
    assert allowed(argocd, "argoproj.io", "applications", "get")  # rollout.wait
    assert allowed(argocd, "argoproj.io", "applications", "patch")  # rollout.set_tag
    argo = rbac_rules("argo", "argo-workflow")
    assert allowed(argo, "argoproj.io", "workflows", "create")  # train-model starts the build
    assert allowed(argo, "argoproj.io", "workflowtaskresults", "create")  # step outputs


def containers_of(image: str) -> list[dict]:
    """The containers and init containers of the templates whose image name contains `image`."""
    found = []
    for _, doc in DOCS:
        for t in doc.get("spec", {}).get("templates") or []:
            for c in [t.get("container"), *(t.get("initContainers") or [])]:
                if c and image in c.get("image", ""):
                    found.append(c)
    return found


def filled(words: list[str], values: dict[str, str]) -> list[str]:
    """The words with each {{inputs.parameters.X}} replaced by values[X]."""
    return [re.sub(r"\{\{inputs\.parameters\.([\w-]+)\}\}", lambda m: values[m[1]], w)
            for w in words]


def copied_to(dockerfile: Path, source: str) -> str:
    """Where the Dockerfile COPYs the repository folder `source` (e.g. "train/")."""
    copies = re.findall(rf"^COPY\s+{re.escape(source)}\s+(\S+)", dockerfile.read_text(), re.M)
    assert copies, f"{dockerfile} does not COPY {source}"
    return copies[-1].rstrip("/")


def test_the_images_run_the_commands_the_workflows_give_them() -> None:
    """Each python command a template runs names a script its image holds, with valid args."""
    import flow

    from app.staging_tests import parse_args

    train_docker = REPO / "train" / "Dockerfile"
    workdir = re.findall(r"^WORKDIR\s+(\S+)", train_docker.read_text(), re.M)[-1].rstrip("/")
    assert copied_to(train_docker, "train/") == workdir  # scripts run by bare name from here
    # The lifecycle steps (ConfigMap key train-image) and training (its content tag).
    train_runs = [*containers_of("{{inputs.parameters.train-image}}"),
                  *containers_of("{{inputs.parameters.image}}")]
    assert len(train_runs) >= 3
    for container in train_runs:
        command = " ".join(container["command"])
        (script,) = re.findall(r"\bpython (\S+\.py)\b", command)
        assert (REPO / "train" / script).is_file(), command
        if script == "flow.py":  # ops.py's command lines are checked in test_workflows.py
            values = {"scenario": "normal", "dataset": "food11", "subset": "50"}
            args = flow.parse_args(filled(container["command"][2:], values))
            assert (args.scenario, args.dataset, args.subset) == ("normal", "food11", "50")

    app_docker = REPO / "app" / "Dockerfile"
    assert copied_to(app_docker, "app/") == "/srv/app"
    for name in ("model.onnx", "versions.txt"):
        assert re.search(rf"^COPY\b.*\b{re.escape(name)}\b", app_docker.read_text(), re.M), name
    (suite,) = containers_of("gourmetgram-app")
    assert suite["command"][:3] == ["python", "-m", "app.staging_tests"]
    args = parse_args(filled(suite["command"][3:], {"version": "3"}))
    assert args.expect_version == "3" and args.url.endswith(":8081")


def test_deploys_outwait_the_deployments_progress_deadline() -> None:
    """A version that never gets ready must show as Degraded before the deploy step gives up."""
    import ops

    from tests.k8s_render import case, render

    for env in ENVIRONMENTS:
        (deployment,) = [o for o in render(case(env, "cloud")) if o["kind"] == "Deployment"]
        assert deployment["spec"]["progressDeadlineSeconds"] < ops.DEPLOY_TIMEOUT_S
    (deploy,) = [t for _, doc in DOCS if doc["metadata"]["name"] == "deploy-container-image"
                 for t in doc["spec"]["templates"] if t["name"] == "deploy"]
    (timeout,) = [p for p in deploy["inputs"]["parameters"] if p["name"] == "timeout"]
    assert float(timeout["value"]) == ops.DEPLOY_TIMEOUT_S


# The login the workflows use for MLflow (shared name, CONTRIBUTING.md).
MLFLOW_LOGIN = {"MLFLOW_TRACKING_USERNAME": "username", "MLFLOW_TRACKING_PASSWORD": "password"}
MLFLOW_SECRET = "mlflow-credentials"


def env_lists(node: object) -> list[tuple[str, list[dict]]]:
    """(container name, env) of every container-like mapping with an env list, at any depth."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("env"), list):
            found.append((node.get("name", "?"), node["env"]))
        for value in node.values():
            found += env_lists(value)
    elif isinstance(node, list):
        for value in node:
            found += env_lists(value)
    return found


def test_every_mlflow_client_gets_the_login() -> None:
    """A container with MLFLOW_TRACKING_URI also gets both credentials from the Secret."""
    clients = [(f"{label}: {name}", env) for label, doc in DOCS for name, env in env_lists(doc)
               if any(e.get("name") == "MLFLOW_TRACKING_URI" for e in env)]
    assert len(clients) >= 3, clients  # train-model, ops, build-container-image's download
    for where, env in clients:
        refs = {e["name"]: (e.get("valueFrom") or {}).get("secretKeyRef") for e in env}
        for variable, key in MLFLOW_LOGIN.items():
            assert refs.get(variable) == {"name": MLFLOW_SECRET, "key": key}, (where, variable)


def test_the_playbook_gives_the_workflows_the_login_they_read() -> None:
    """argocd_add_platform.yml copies exactly the keys the workflows read into argo."""
    plays = load_yaml(REPO / "ansible" / "argocd" / "argocd_add_platform.yml")
    (task,) = [t for p in plays for t in p.get("tasks", [])
               if t.get("ansible.builtin.include_role", {}).get("name") == "generated_secret"]
    (secret,) = [s for s in task["loop"] if s["name"] == MLFLOW_SECRET]
    assert secret["copy_namespace"] == "argo"
    assert secret["copy_keys"] == sorted(MLFLOW_LOGIN.values(), reverse=True)
    assert {k["key"] for k in secret["secret_keys"]} >= set(MLFLOW_LOGIN.values())
    chart = load_yaml(REPO / "k8s" / "platform" / "values.yaml")
    assert chart["secrets"]["mlflow"] == MLFLOW_SECRET
