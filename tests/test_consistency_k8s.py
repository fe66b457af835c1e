"""The charts agree with the rest of the lab: ports, names, versions and limits.

Every check reads the files other parts of the repository own (Terraform, notebooks,
workflows, train/, ansible/); a file that should be there and is not fails its test.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from tests.k8s_render import (
    APPLICATIONS,
    ENVIRONMENTS,
    K8S,
    REPO,
    case,
    containers,
    find,
    load_yaml,
    render,
    versions,
)

# Lab ports that no chart of k8s/ serves: SSH, the Kubernetes API (kubectl from Jupyter),
# and the Argo CD and Argo Workflows UIs, which the post_k8s playbook exposes.
NOT_FROM_CHARTS = {22: "SSH", 6443: "Kubernetes API", 8888: "Argo CD UI", 2746: "Argo Workflows UI"}
# Ports that stay off kind's host mapping: kind has its own API port and no SSH.
NOT_IN_KIND = {22, 6443}


def lab_ports() -> dict[int, str]:
    """The table "Ports on the floating IP (node1)" of CONTRIBUTING.md: port -> service."""
    text = (REPO / "CONTRIBUTING.md").read_text()
    section = text.split("## Ports on the floating IP", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|", section, flags=re.MULTILINE)
    assert rows, "CONTRIBUTING.md has no port table"
    return {int(port): service for port, service in rows}


def web_ports() -> set[int]:
    """The lab ports a browser opens (all but SSH and the Kubernetes API)."""
    return set(lab_ports()) - NOT_IN_KIND


def exposed_services(flavour: str) -> list[dict[str, Any]]:
    """Every Service the charts put on node1's address (cloud) or on a NodePort (kind)."""
    services = []
    for app in APPLICATIONS:
        for obj in render(case(app, flavour)):
            spec = obj.get("spec", {})
            public = spec.get("externalIPs") or spec.get("type") == "NodePort"
            if obj["kind"] == "Service" and public:
                services.append(obj)
    return services


# ---- versions and limits -----------------------------------------------------------------


def test_kind_node_image_is_the_pinned_one() -> None:
    config = load_yaml(K8S / "kind" / "kind-config.yaml")
    assert [n["image"] for n in config["nodes"]] == [versions()["kind_node_image"]]
    minor = str(versions()["kubernetes_minor"])
    assert versions()["kind_node_image"].split(":v", 1)[1].startswith(minor + ".")


def test_mlflow_server_image_matches_the_client_pin() -> None:
    pins = (REPO / "train" / "requirements.txt").read_text()
    (client,) = re.findall(r"^mlflow==(\S+)", pins, flags=re.MULTILINE)
    image = load_yaml(K8S / "platform" / "values.yaml")["mlflow"]["image"]
    assert image == f"ghcr.io/mlflow/mlflow:v{client}-full"
    assert load_yaml(K8S / "platform" / "Chart.yaml")["appVersion"] == client


def test_serving_memory_limit_matches_train_config() -> None:
    config = REPO / "train" / "config.py"
    assert config.is_file(), "train/config.py is missing"
    tree = ast.parse(config.read_text())
    values = [
        node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "SERVING_MEMORY_LIMIT" for t in node.targets)
        and isinstance(node.value, ast.Constant)
    ]
    assert len(values) == 1, "train/config.py must set SERVING_MEMORY_LIMIT once, to a literal"
    for env in ENVIRONMENTS:
        for flavour in ("cloud", "kind"):
            deployment = find(render(case(env, flavour)), "Deployment", "gourmetgram-app")
            (app,) = containers(deployment)
            assert app["resources"]["limits"]["memory"] == values[0], (env, flavour)


# ---- ports ---------------------------------------------------------------------------


def test_charts_expose_exactly_the_lab_ports() -> None:
    exposed = {p["port"] for s in exposed_services("cloud") for p in s["spec"]["ports"]}
    assert exposed | set(NOT_FROM_CHARTS) == set(lab_ports())
    assert not exposed & set(NOT_FROM_CHARTS)


def terraform_ports(folder: Path) -> set[int]:
    """Ports opened by the security-group rules of the Terraform files in folder."""
    files = sorted(folder.glob("*.tf"))
    assert files, f"no Terraform files in {folder.relative_to(REPO)}"
    documents = [hcl2.loads(f.read_text()) for f in files]
    local_values = {
        k: v for d in documents for block in d.get("locals", []) for k, v in block.items()
    }
    ports: set[int] = set()
    rules = [
        rule
        for d in documents
        for block in d.get("resource", [])
        for kind, named in block.items()
        if kind.strip('"') == "openstack_networking_secgroup_rule_v2"
        for rule in named.values()
    ]
    assert rules, "no openstack_networking_secgroup_rule_v2 in Terraform"
    for rule in rules:
        low, high = rule["port_range_min"], rule["port_range_max"]
        assert low == high, f"a rule opens a range {low}-{high}; the lab opens single ports"
        if isinstance(low, int):
            ports.add(low)
            continue
        # for_each over a local map or list: port_range_min = each.value
        match = re.fullmatch(r"\$\{local\.(\w+)\}", str(rule.get("for_each", "")))
        assert low == "${each.value}" and match, f"cannot resolve the port of rule {rule}"
        collection = local_values[match.group(1)]
        items = collection.values() if isinstance(collection, dict) else collection
        ports |= {int(p) for p in items if p != "__is_block__" and not isinstance(p, bool)}
    return ports


def test_terraform_opens_exactly_the_lab_ports() -> None:
    assert terraform_ports(REPO / "tf" / "kvm") == set(lab_ports())


def kind_mapping() -> dict[int, int]:
    """kind's extraPortMappings: host port on localhost -> NodePort on the node."""
    (node,) = load_yaml(K8S / "kind" / "kind-config.yaml")["nodes"]
    mapping = {m["hostPort"]: m["containerPort"] for m in node["extraPortMappings"]}
    assert {m.get("listenAddress") for m in node["extraPortMappings"]} == {"127.0.0.1"}
    return mapping


def test_kind_maps_every_browser_port() -> None:
    assert set(kind_mapping()) == web_ports()


def test_kind_mapping_reaches_the_charts_node_ports() -> None:
    mapping = kind_mapping()
    for service in exposed_services("kind"):
        for port in service["spec"]["ports"]:
            assert mapping[port["port"]] == port["nodePort"], service["metadata"]


def test_kind_mapping_reaches_the_argo_ui_node_ports() -> None:
    settings = load_yaml(REPO / "ansible" / "group_vars" / "all.yml")
    mapping = kind_mapping()
    assert mapping[settings["argocd_ui_port"]] == settings["argocd_ui_nodeport"]
    assert mapping[settings["argo_workflows_ui_port"]] == settings["argo_workflows_ui_nodeport"]


def notebook_texts() -> dict[str, str]:
    """The source of every notebook cell, per notebook."""
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert notebooks, "notebooks/*.ipynb are missing: run make notebooks"
    return {
        n.name: "\n".join("".join(c["source"]) for c in json.loads(n.read_text())["cells"])
        for n in notebooks
    }


# http://A.B.C.D:8000, https://A.B.C.D:6443, ${FLOATING_IP}:8081, $FLOATING_IP:80, http://A.B.C.D/
FLOATING_URL = re.compile(r"(?:A\.B\.C\.D|\$\{?FLOATING_IP\}?)(?::(\d+))?(?![\w.])")


def test_notebook_urls_use_lab_ports_and_cover_every_ui() -> None:
    used: dict[int, set[str]] = {}
    for name, text in notebook_texts().items():
        for match in FLOATING_URL.finditer(text):
            preceding = text[max(0, match.start() - 8) : match.start()]
            if match.group(1) is None and "://" not in preceding:
                continue  # a bare address (ssh cc@A.B.C.D), not a URL
            used.setdefault(int(match.group(1) or 80), set()).add(name)
    strangers = {p: sorted(n) for p, n in used.items() if p not in lab_ports()}
    assert not strangers, f"ports that are not lab ports, per notebook: {strangers}"
    assert web_ports() <= set(used), f"no notebook opens ports {sorted(web_ports() - set(used))}"


# ---- names ---------------------------------------------------------------------------


# service.namespace.svc[.cluster.local][:port], for the lab's own namespaces
SERVICE_DNS = re.compile(
    r"\b([a-z0-9-]+)\.(gourmetgram-[a-z0-9-]+)\.svc(?:\.cluster\.local)?(?::(\d+))?"
)
# kubectl -n NS, --namespace NS, --namespace=NS, namespace: NS
NAMESPACE_FLAG = re.compile(
    r"(?:(?<![\w-])-n|--namespace[= ]|namespace:)\s*\"?(gourmetgram-[a-z0-9-]+)"
)


def chart_services() -> dict[tuple[str, str], set[int]]:
    """(namespace, service) -> ports, over every chart and environment."""
    services: dict[tuple[str, str], set[int]] = {}
    for app in APPLICATIONS:
        for obj in render(case(app, "cloud")):
            if obj["kind"] == "Service":
                key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                services.setdefault(key, set()).update(p["port"] for p in obj["spec"]["ports"])
    return services


def referring_files(source: str) -> dict[str, str]:
    """The files of one source that name services of k8s/: workflows, ansible or notebooks."""
    if source == "notebooks":
        return {f"notebooks/{k}": v for k, v in notebook_texts().items()}
    if source == "ansible":
        files = [p for p in sorted((REPO / "ansible").rglob("*.yml"))
                 if "kubespray" not in p.parts]
        return {str(p.relative_to(REPO)): p.read_text() for p in files}
    workflows = sorted((REPO / "workflows").rglob("*.yaml"))
    assert workflows, "workflows/*.yaml are missing"
    return {str(p.relative_to(REPO)): p.read_text() for p in workflows}


SOURCES = ["workflows", "ansible", "notebooks"]


@pytest.mark.parametrize("source", SOURCES)
def test_service_names_used_elsewhere_exist_in_the_charts(source: str) -> None:
    services = chart_services()
    unknown = []
    for path, text in referring_files(source).items():
        for name, namespace, port in SERVICE_DNS.findall(text):
            ports = services.get((namespace, name))
            if ports is None or (port and int(port) not in ports):
                unknown.append(f"{path}: {name}.{namespace}:{port or '-'}")
    assert not unknown, unknown


# The workflows name namespaces only inside service addresses (checked above).
@pytest.mark.parametrize("source", ["ansible", "notebooks"])
def test_namespaces_used_elsewhere_exist_in_the_charts(source: str) -> None:
    namespaces = {ns for ns, _ in chart_services()}
    used = [(path, ns) for path, text in referring_files(source).items()
            for ns in NAMESPACE_FLAG.findall(text)]
    assert used, f"no namespace found in the {source}: is the pattern still right?"
    unknown = [f"{path}: {ns}" for path, ns in used if ns not in namespaces]
    assert not unknown, unknown


def test_workflows_reach_mlflow_and_staging_by_their_chart_names() -> None:
    text = "\n".join(referring_files("workflows").values())
    text += (REPO / "ansible" / "group_vars" / "all.yml").read_text()
    assert "mlflow.gourmetgram-platform.svc.cluster.local:8000" in text
    assert "gourmetgram-app.gourmetgram-staging.svc.cluster.local:8081" in text


# ---- what is open to the Internet ---------------------------------------------------------


def playbook_ui_services() -> list[dict[str, Any]]:
    """The Services that post_k8s publishes for the Argo CD and Argo Workflows UIs."""
    plays = load_yaml(REPO / "ansible" / "post_k8s" / "post_k8s_configure.yml")
    (task,) = [t for p in plays for t in p.get("tasks", []) if "UIs" in t["name"]]
    spec = task["kubernetes.core.k8s"]["definition"]["spec"]
    # The spec is one Jinja expression: check it publishes the way the charts do.
    assert "'externalIPs': [external_ip]" in spec and "'type': 'NodePort'} if kind" in spec
    return [{"metadata": {"name": i["name"], "namespace": i["namespace"]},
             "spec": {"selector": i["selector"]}} for i in task["loop"]]


def text_under(*folders: str) -> str:
    """The YAML and Jinja of the folders that configure the cluster, in one string."""
    return "\n".join(p.read_text() for f in folders for p in sorted((REPO / f).rglob("*"))
                     if p.suffix in {".yml", ".yaml", ".j2", ".tpl"} and "kubespray" not in p.parts)


def mlflow_login(objects: list[dict[str, Any]], service: dict[str, Any]) -> None:
    """MLflow: its basic-auth app (user and password), checked by the chart tests too."""
    deployment = find(objects, "Deployment", "mlflow")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"][
        "labels"].items()
    (container,) = containers(deployment)
    assert "--app-name=basic-auth" in container["args"]


def minio_console_login(objects: list[dict[str, Any]], service: dict[str, Any]) -> None:
    """MinIO console: MinIO's login with the generated root user (never minioadmin)."""
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["console"]
    (container,) = containers(find(objects, "Deployment", "minio"))
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]
            if "valueFrom" in e}
    assert refs["MINIO_ROOT_USER"] == refs["MINIO_ROOT_PASSWORD"] == "minio-credentials"


def argocd_login(objects: list[dict[str, Any]], service: dict[str, Any]) -> None:
    """Argo CD UI: Argo CD's own login (admin); nothing turns anonymous access on."""
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "argocd-server"}
    assert "users.anonymous.enabled" not in text_under("ansible", "k8s")


def argo_workflows_login(objects: list[dict[str, Any]], service: dict[str, Any]) -> None:
    """Argo Workflows UI: its default "client" auth mode, a pasted service-account token."""
    assert service["spec"]["selector"] == {"app": "argo-server"}
    assert "--auth-mode" not in text_under("ansible", "k8s", "workflows")
    tokens = [d for d in yaml.safe_load_all(
        (REPO / "ansible" / "post_k8s" / "manifests" / "argo-ui-rbac.yaml").read_text())
        if d and d["kind"] == "Secret"]
    assert [t["type"] for t in tokens] == ["kubernetes.io/service-account-token"]


def grafana_login(objects: list[dict[str, Any]], service: dict[str, Any]) -> None:
    """Grafana: its admin user with the generated password; no anonymous access, no sign-up."""
    (container,) = containers(find(objects, "Deployment", "grafana"))
    env = {e["name"]: e for e in container["env"]}
    secret = env["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "grafana-credentials", "key": "password"}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"]["value"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"]["value"] == "false"


# Every Service on the floating IP (or a kind NodePort) and how it asks who you are; the
# app is the one open on purpose: directly (gourmetgram-app, ports 8082, 8080, 8081) and
# through the live route (traefik, port 80).
LOGINS = {
    "mlflow": mlflow_login,
    "minio-console": minio_console_login,
    "grafana": grafana_login,
    "argocd-server-external": argocd_login,
    "argo-server-external": argo_workflows_login,
}
OPEN_ON_PURPOSE = {"gourmetgram-app", "traefik"}


@pytest.mark.parametrize("flavour", ["cloud", "kind"])
def test_every_published_service_but_the_app_requires_a_login(flavour: str) -> None:
    objects = {app: render(case(app, flavour)) for app in APPLICATIONS}
    published = [(app, s) for app in APPLICATIONS for s in exposed_services(flavour)
                 if s in objects[app]]
    published += [("post_k8s", s) for s in playbook_ui_services()]
    names = {s["metadata"]["name"] for _, s in published}
    assert names == set(LOGINS) | OPEN_ON_PURPOSE, "a published Service without a known login"
    for app, service in published:
        name = service["metadata"]["name"]
        if name not in OPEN_ON_PURPOSE:
            LOGINS[name](objects.get(app, []), service)


def test_notebook_3_lists_every_open_port_and_its_login() -> None:
    """Notebook 3's table of what the floating IP exposes agrees with the lab's ports."""
    text = (REPO / "snippets" / "3_provision_tf.md").read_text()
    section = text.split("## Who can reach the lab", 1)[1].split(":::", 1)[0]
    rows = re.findall(r"^\| ([\d, ]+) \| (.+?) \| (.+?) \|$", section, flags=re.MULTILINE)
    listed = {int(port): login for ports, _, login in rows for port in ports.split(", ")}
    assert set(listed) == set(lab_ports())
    app_ports = {port for port, service in lab_ports().items() if " app" in f" {service}"}
    assert app_ports == {80, 8080, 8081, 8082}
    for port, login in listed.items():
        assert login.startswith("anyone") == (port in app_ports), (port, login)
    assert 'variable "allowed_cidr"' in (REPO / "tf" / "kvm" / "variables.tf").read_text()


@pytest.mark.parametrize(("value", "expected"), [("203.0.113.0/24", "203.0.113.0/24"), ("", "")])
def test_notebook_3_cell_narrows_allowed_cidr(value: str, expected: str) -> None:
    """Run the cell with bash: a value becomes TF_VAR_allowed_cidr; empty keeps the default."""
    text = (REPO / "snippets" / "3_provision_tf.md").read_text()
    section = text.split("## Who can reach the lab", 1)[1]
    (code,) = re.findall(r"```bash\n(.*?)```", section.split("\n::: {.cell .markdown}", 1)[0],
                         flags=re.S)
    assert code.startswith('ALLOWED_CIDR=""'), code
    code = code.replace('ALLOWED_CIDR=""', f'ALLOWED_CIDR="{value}"', 1)
    script = code + "status=$?\nprintenv TF_VAR_allowed_cidr\nexit $status\n"
    result = subprocess.run(["bash", "-c", script],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    shown, *exported = result.stdout.splitlines()
    assert exported == ([expected] if expected else [])
    assert shown == f"allowed_cidr={expected or '0.0.0.0/0 (the default)'}"
