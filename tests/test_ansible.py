"""Offline checks of ansible/: syntax, ansible-lint, the inventories and the manifests."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.k8s_render import versions
from tests.test_workflows_consistency import CONFIG_KEYS

REPO = Path(__file__).resolve().parent.parent
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent
KUBESPRAY_INVENTORY = ANSIBLE / "k8s" / "inventory" / "mycluster"
PLACEHOLDER = "A.B.C.D"

PLAYBOOKS = (
    "general/hello_host.yml",
    "pre_k8s/pre_k8s_configure.yml",
    "post_k8s/post_k8s_configure.yml",
    "argocd/argocd_add_platform.yml",
    "argocd/argocd_add_env.yml",
    "argocd/argocd_add_staging.yml",
    "argocd/argocd_add_canary.yml",
    "argocd/argocd_add_prod.yml",
    "argocd/workflow_templates_apply.yml",
    "argocd/workflow_build_init.yml",
)
# The playbooks that also run against a kind cluster (inventory-kind.yml).
KIND_PLAYBOOKS = tuple(p for p in PLAYBOOKS if p.startswith(("post_k8s/", "argocd/")))


def run(*cmd: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run a tool from the venv and capture its output."""
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)


def load(path: Path) -> Any:
    """Parse one YAML file."""
    return yaml.safe_load(path.read_text())


def tasks(playbook: str) -> list[dict[str, Any]]:
    """Every task of every play of a playbook."""
    return [t for play in load(ANSIBLE / playbook) for t in play.get("tasks", [])]


def test_the_playbook_list_is_complete() -> None:
    found = {
        str(p.relative_to(ANSIBLE))
        for p in ANSIBLE.glob("*/*.yml")
        if p.parent.name in {"general", "pre_k8s", "post_k8s", "argocd"}
    }
    assert found == set(PLAYBOOKS)


def test_playbooks_pass_syntax_check_with_the_vm_inventory() -> None:
    # Run from ansible/ so that ansible.cfg is read, as it is in the notebooks.
    result = run(
        BIN / "ansible-playbook", "-i", "inventory.yml", "--syntax-check", *PLAYBOOKS, cwd=ANSIBLE
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("playbook: ") == len(PLAYBOOKS), result.stdout


def test_playbooks_pass_syntax_check_with_the_kind_inventory() -> None:
    # The way CI calls them: from the repository root, no ansible.cfg.
    paths = [f"ansible/{p}" for p in KIND_PLAYBOOKS]
    result = run(
        BIN / "ansible-playbook", "-i", "ansible/inventory-kind.yml", "--syntax-check", *paths
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("playbook: ") == len(KIND_PLAYBOOKS), result.stdout


def test_syntax_check_catches_a_broken_playbook(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "- name: Broken\n  hosts: localhost\n  tasks:\n    - name: No module\n      nosuchkey: 1\n"
    )
    result = run(BIN / "ansible-playbook", "-i", "localhost,", "--syntax-check", bad)
    assert result.returncode != 0


def test_ansible_lint_production_profile_is_clean() -> None:
    config = load(REPO / ".ansible-lint")
    assert config["profile"] == "production" and config["offline"] is True
    assert "ansible/k8s/kubespray/" in config["exclude_paths"]
    result = run(BIN / "ansible-lint", "ansible/")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Profile 'production' was required, and it passed" in output, output


# Jinja resolves `item.keys` to the dict's keys() method before the key "keys", so a field
# named like a dict method silently becomes a method object (and the task fails far away).
DICT_METHODS = ("keys", "values", "items", "get", "update", "pop", "copy", "clear")


def test_no_variable_field_is_named_like_a_dict_method() -> None:
    methods = "|".join(DICT_METHODS)
    pattern = re.compile(rf"\b[a-z_][a-z0-9_]*\.({methods})\b(?!\s*\()")
    found = []
    for path in sorted(ANSIBLE.rglob("*.yml")):
        if "kubespray" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for expr in re.findall(r"{{(.*?)}}", line):
                if pattern.search(expr):
                    found.append(f"{path.relative_to(REPO)}:{number}: {expr.strip()}")
    assert not found, "use item['name'] or another field name:\n" + "\n".join(found)


def inventory(path: Path) -> dict[str, Any]:
    """What ansible-inventory makes of an inventory file."""
    result = run(BIN / "ansible-inventory", "-i", path, "--list")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def hosts(inv: dict[str, Any], group: str) -> set[str]:
    """The hosts of a group, its child groups included."""
    entry = inv.get(group, {})
    found = set(entry.get("hosts", []))
    for child in entry.get("children", []):
        found |= hosts(inv, child)
    return found


def test_kubespray_inventory_has_the_expected_groups() -> None:
    inv = inventory(KUBESPRAY_INVENTORY / "hosts.yaml")
    nodes = {"node1", "node2", "node3"}
    assert hosts(inv, "kube_control_plane") == {"node1"}
    assert hosts(inv, "etcd") == nodes
    assert hosts(inv, "kube_node") == nodes
    assert hosts(inv, "k8s_cluster") == nodes
    assert "gpu" in inv["kube_node"]["children"], "the optional GPU node must be a worker"
    for name in nodes:
        address = inv["_meta"]["hostvars"][name]["ip"]
        assert address == f"192.168.1.1{name[-1]}"


def kubespray_vars() -> dict[str, Any]:
    """Kubespray group_vars of the lab cluster, merged."""
    merged: dict[str, Any] = {}
    for path in sorted((KUBESPRAY_INVENTORY / "group_vars").rglob("*.yml")):
        if path.parent.name in {"all", "k8s_cluster"}:
            merged |= load(path)
    return merged


def test_kubespray_settings_enable_what_the_lab_needs() -> None:
    settings = kubespray_vars()
    assert settings["container_manager"] == "containerd"
    assert settings["helm_enabled"] and settings["metrics_server_enabled"]
    assert settings["local_path_provisioner_enabled"]
    assert settings["local_path_provisioner_is_default_storageclass"] == "true"
    assert settings["registry_enabled"] and settings["registry_namespace"] == "kube-system"
    assert settings["supplementary_addresses_in_ssl_keys"] == [PLACEHOLDER]
    gpu = load(KUBESPRAY_INVENTORY / "group_vars" / "gpu.yml")
    assert gpu["node_labels"] == {"gourmetgram.io/gpu": "true"}


def test_containerd_pulls_the_cluster_registry_through_its_nodeport() -> None:
    settings = kubespray_vars()
    registry = re.search(
        r"\| cluster registry \| `([^`]+)`", (REPO / "CONTRIBUTING.md").read_text()
    )
    assert registry, "CONTRIBUTING.md names the cluster registry"
    (mirror,) = settings["containerd_registries_mirrors"]
    assert mirror["prefix"] == registry.group(1)
    assert settings["registry_service_type"] == "NodePort"
    assert mirror["mirrors"][0]["host"] == "http://{{ ip }}:{{ registry_service_nodeport }}"
    assert 30000 <= int(settings["registry_service_nodeport"]) <= 32767


def test_project_inventories() -> None:
    vms = inventory(ANSIBLE / "inventory.yml")
    assert hosts(vms, "nodes") == {"node1", "node2", "node3"}
    assert hosts(vms, "controller") == {"localhost"}
    assert vms["_meta"]["hostvars"]["node1"]["ansible_host"] == "192.168.1.11"
    kind = inventory(ANSIBLE / "inventory-kind.yml")
    assert hosts(kind, "controller") == {"localhost"} and hosts(kind, "nodes") == set()
    local = kind["_meta"]["hostvars"]["localhost"]
    assert local["kind"] is True and local["cluster_registry"] == "kind-registry:5000"
    defaults = load(ANSIBLE / "group_vars" / "all.yml")
    assert defaults["kind"] is False
    assert defaults["cluster_registry"] == "registry.kube-system.svc.cluster.local:5000"


def test_committed_inventories_leave_the_gpu_node_to_notebook_3() -> None:
    """gpu-node comes from tools/lab_env.py's files; the committed ones never list it."""
    from tools import lab_env

    for path, part in ((ANSIBLE / "inventory.yml", lab_env.LAB_GPU_INVENTORY),
                       (ANSIBLE / "k8s" / "inventory" / "mycluster" / "hosts.yaml",
                        lab_env.KUBESPRAY_GPU_INVENTORY)):
        text = path.read_text()
        assert "uncomment" not in text.lower(), path.name
        assert not re.search(r"^\s*#\s*gpu-node:", text, re.M), path.name  # no host to fill in
        assert part.name in text, path.name  # the comment names the file that adds it
        assert "gpu-node" not in inventory(path)["_meta"]["hostvars"], path.name


def test_the_floating_ip_placeholder_is_in_exactly_the_documented_files() -> None:
    documented = {
        "ansible/ansible.cfg",
        "ansible/group_vars/all.yml",
        "ansible/k8s/inventory/mycluster/group_vars/k8s_cluster/k8s-cluster.yml",
    }
    listed = set(re.findall(r"^#   (ansible/\S+)$", (ANSIBLE / "ansible.cfg").read_text(), re.M))
    assert listed == documented, "ansible.cfg lists the files the notebook edits"
    holders = {
        str(p.relative_to(REPO))
        for p in ANSIBLE.rglob("*")
        if p.is_file()
        and "kubespray" not in p.parts
        and p.suffix != ".md"
        and re.search(rf"(?<![\w.]){re.escape(PLACEHOLDER)}(?![\w.])", p.read_text())
    }
    assert holders == documented
    assert f'cc@{PLACEHOLDER}"' in (ANSIBLE / "ansible.cfg").read_text()


def test_ui_nodeports_match_the_kind_port_mappings() -> None:
    defaults = load(ANSIBLE / "group_vars" / "all.yml")
    config = load(REPO / "k8s" / "kind" / "kind-config.yaml")
    mapped = {
        m["hostPort"]: m["containerPort"]
        for n in config["nodes"]
        for m in n.get("extraPortMappings", [])
    }
    assert mapped[defaults["argocd_ui_port"]] == defaults["argocd_ui_nodeport"]
    assert mapped[defaults["argo_workflows_ui_port"]] == defaults["argo_workflows_ui_nodeport"]


def test_workflow_settings_configmap_has_the_shared_keys() -> None:
    (task,) = [
        t for t in tasks("post_k8s/post_k8s_configure.yml") if "gourmetgram-config" in t["name"]
    ]
    definition = task["kubernetes.core.k8s"]["definition"]
    assert definition["metadata"] == {
        "name": "gourmetgram-config", "namespace": "argo",
        "labels": {"workflows.argoproj.io/configmap-type": "Parameter"}}
    assert set(definition["data"]) == CONFIG_KEYS


def manifests() -> list[dict[str, Any]]:
    """The static Kubernetes objects that post_k8s applies."""
    return [
        doc
        for path in sorted((ANSIBLE / "post_k8s" / "manifests").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    ]


def test_manifests_match_the_kubernetes_schema() -> None:
    minor = str(versions()["kubernetes_minor"])
    objects = manifests()
    assert len(objects) >= 8
    for obj in objects:
        checked = kubernetes_validate.validate(obj, minor, strict=True)
        assert checked == minor, (
            f"{obj['kind']} {obj['metadata']['name']} validated against {checked}"
        )


def rules(role: str, namespace: str) -> list[dict[str, Any]]:
    """The rules of one Role."""
    (found,) = [
        o
        for o in manifests()
        if o["kind"] == "Role" and o["metadata"] == {"name": role, "namespace": namespace}
    ]
    return found["rules"]


def allowed(role_rules: list[dict[str, Any]], resource: str, verb: str) -> bool:
    """Whether any rule grants verb on resource."""
    return any(resource in r["resources"] and verb in r["verbs"] for r in role_rules)


def test_workflow_service_account_has_least_privilege() -> None:
    accounts = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in manifests()
        if o["kind"] == "ServiceAccount"
    }
    assert ("argo", "argo-workflow") in accounts
    in_argo = rules("argo-workflow", "argo")
    assert allowed(in_argo, "workflowtaskresults", "create") and allowed(
        in_argo, "workflowtaskresults", "patch"
    )
    assert allowed(in_argo, "pods/log", "get") and allowed(in_argo, "workflows", "create")
    (config_rule,) = [r for r in in_argo if "configmaps" in r["resources"]]
    assert config_rule["resourceNames"] == ["gourmetgram-config"] and config_rule["verbs"] == [
        "get"
    ]
    assert not any(
        "secrets" in r["resources"] or "*" in r["verbs"] + r["resources"] for r in in_argo
    )
    deployer = rules("argo-workflow-deployer", "argocd")
    assert deployer == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["applications"],
            "verbs": ["get", "list", "watch", "patch"],
        }
    ]
    bindings = [
        o
        for o in manifests()
        if o["kind"] == "RoleBinding" and o["roleRef"]["name"].startswith("argo-workflow")
    ]
    assert {b["metadata"]["namespace"] for b in bindings} == {"argo", "argocd"}
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "argo-workflow", "namespace": "argo"}
        ]


def test_every_workflow_template_runs_as_the_lab_service_account() -> None:
    templates = [
        doc
        for path in sorted((REPO / "workflows").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") in {"WorkflowTemplate", "CronWorkflow"}
    ]
    assert templates, "workflows/ has the lab's templates"
    for doc in templates:
        spec = doc["spec"].get("workflowSpec", doc["spec"])
        assert spec.get("serviceAccountName") == "argo-workflow", doc["metadata"]["name"]


def test_environment_playbooks_name_existing_applications() -> None:
    for short, env in (("staging", "staging"), ("canary", "canary"), ("prod", "production")):
        (play,) = load(ANSIBLE / "argocd" / f"argocd_add_{short}.yml")
        assert play["ansible.builtin.import_playbook"] == "argocd_add_env.yml"
        assert play["vars"] == {"env": env}
        assert (REPO / "k8s" / "argocd" / f"{env}.yaml").is_file()
    assert (REPO / "k8s" / "argocd" / "platform.yaml").is_file()


def test_secret_tasks_hide_their_values() -> None:
    role = load(ANSIBLE / "roles" / "generated_secret" / "tasks" / "main.yml")
    assert all(t.get("no_log") is True for t in role)
    for playbook in PLAYBOOKS:
        for task in tasks(playbook):
            module = task.get("kubernetes.core.k8s_info", {})
            if module.get("kind") == "Secret":
                assert task.get("no_log") is True, f"{playbook}: {task['name']}"
                assert "show_secrets" in task.get("when", ""), f"{playbook}: {task['name']}"


@pytest.mark.parametrize("playbook", KIND_PLAYBOOKS)
def test_cluster_playbooks_load_versions_and_use_the_kubeconfig(playbook: str) -> None:
    imports = [p["ansible.builtin.import_playbook"] for p in load(ANSIBLE / playbook)
               if "ansible.builtin.import_playbook" in p]
    plays = [p for p in load(ANSIBLE / playbook) if "hosts" in p]
    if imports:  # argocd_add_staging.yml and friends only import argocd_add_env.yml
        assert not plays and imports == ["argocd_add_env.yml"], playbook
        return
    assert any(play["hosts"] == "controller" for play in plays), playbook
    for play in plays:
        if play["hosts"] == "controller":
            assert "lab_settings" in [
                r["role"] if isinstance(r, dict) else r for r in play["roles"]
            ]
            assert (
                play["module_defaults"]["group/kubernetes.core.k8s"]["kubeconfig"]
                == "{{ k8s_kubeconfig }}"
            )


def test_roles_are_found_without_an_ansible_cfg() -> None:
    # The kind flavour runs from the repository root, where ansible/ansible.cfg is not read:
    # Ansible finds the roles through the roles/ link next to each playbook folder.
    for folder in ("post_k8s", "argocd"):
        link = ANSIBLE / folder / "roles"
        assert link.is_symlink() and link.resolve() == ANSIBLE / "roles", link


def test_fetched_kubeconfig_and_downloads_stay_out_of_git() -> None:
    paths = ["ansible/k8s/kubeconfig", "build/manifests/argo-cd.yaml"]
    ignored = run("git", "check-ignore", *paths)
    assert ignored.stdout.split() == paths


def test_kind_cell_timeout_outlasts_the_initial_build_waits() -> None:
    """nbval must not kill notebook 6's build cell while the playbook may still be waiting."""
    script = (REPO / "tools" / "kind_notebooks.sh").read_text()
    (cell_s,) = map(int, re.findall(r"--nbval-cell-timeout=(\d+)", script))
    per_wait = load(ANSIBLE / "group_vars" / "all.yml")["initial_build_timeout_s"]
    plays = load(ANSIBLE / "argocd" / "workflow_build_init.yml")
    wait = "{{ initial_build_timeout_s }}"
    waits = sum(task.get("vars", {}).get("workflow_run_timeout_s") == wait
                for play in plays for task in play.get("tasks", []))
    assert waits == 2
    assert cell_s > waits * per_wait


def test_playbooks_that_use_external_ip_gather_node1_facts_first() -> None:
    """external_ip reads node1's facts, and nothing caches facts between playbook runs."""
    assert "ansible_default_ipv4" in load(ANSIBLE / "group_vars" / "all.yml")["external_ip"]
    users = [p for p in PLAYBOOKS if "external_ip" in (ANSIBLE / p).read_text()]
    assert "post_k8s/post_k8s_configure.yml" in users
    for playbook in users:
        plays = load(ANSIBLE / playbook)
        first_use = next(i for i, play in enumerate(plays) if "external_ip" in yaml.safe_dump(play))
        gatherers = [play for play in plays[:first_use + 1]
                     if play["hosts"] in ("node1", "all") and play.get("gather_facts", True)]
        assert gatherers, f"{playbook} uses external_ip without gathering node1's facts first"


def test_the_notebooks_install_the_pinned_kubernetes_client() -> None:
    """kubernetes.core needs the Python client where Ansible runs: the Jupyter server."""
    (pin,) = re.findall(r"^kubernetes==(\S+)", (REPO / "requirements-dev.txt").read_text(), re.M)
    setup = (REPO / "snippets" / "2_setup_env.md").read_text()
    assert f"kubernetes=={pin}" in setup


def test_the_gpu_node_gets_the_runtime_containerd_is_told_to_use() -> None:
    """Kubespray makes nvidia-container-runtime the default; pre_k8s must install it first."""
    gpu_vars = load(KUBESPRAY_INVENTORY / "group_vars" / "gpu.yml")
    (runtime,) = [r for r in gpu_vars["containerd_additional_runtimes"]
                  if r["name"] == gpu_vars["containerd_default_runtime"]]
    (play,) = [p for p in load(ANSIBLE / "pre_k8s" / "pre_k8s_configure.yml")
               if p["hosts"] == "gpu"]
    assert play["vars"]["pre_k8s_nvidia_runtime"] == runtime["options"]["BinaryName"]
    installs = [t["ansible.builtin.apt"]["name"] for t in play["tasks"]
                if "ansible.builtin.apt" in t]
    assert installs == ["nvidia-container-toolkit"]


# ---- NVIDIA's device plugin runs on the GPU node only ----------------------------------------

DEVICE_PLUGIN_INSTALL = "Install the NVIDIA device plugin (there is a GPU node)"


def rendered_vars(*names: str) -> dict[str, Any]:
    """Variables of group_vars/all.yml as Ansible renders them (VM inventory, localhost)."""
    message = "{{ {" + ", ".join(f"'{n}': {n}" for n in names) + "} | to_json }}"
    result = run(BIN / "ansible", "localhost", "-i", ANSIBLE / "inventory.yml", "-c", "local",
                 "-e", f"ansible_python_interpreter={sys.executable}",
                 "-m", "ansible.builtin.debug", "-a", f"msg={message}")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(json.loads(result.stdout.split("=>", 1)[1])["msg"])


def device_plugin_problems(play_tasks: list[dict[str, Any]]) -> list[str]:
    """What is wrong with how post_k8s restricts the device plugin's DaemonSet."""
    names = [t["name"] for t in play_tasks]
    if DEVICE_PLUGIN_INSTALL not in names:
        return [f"no task {DEVICE_PLUGIN_INSTALL!r}"]
    install = names.index(DEVICE_PLUGIN_INSTALL)
    patches = [i for i, t in enumerate(play_tasks)
               if ((t.get("kubernetes.core.k8s") or {}).get("definition") or {}).get("kind")
               == "DaemonSet"]
    if len(patches) != 1:
        return [f"expected one task that applies the DaemonSet's node selector, found {patches}"]
    task = play_tasks[patches[0]]
    k8s = task["kubernetes.core.k8s"]
    problems = []
    if patches[0] < install:
        problems.append("the node selector is applied before the DaemonSet exists")
    if task.get("when") != play_tasks[install].get("when"):
        problems.append("the selector task must run exactly when the plugin is installed")
    (role_apply,) = [t for t in load(ANSIBLE / "roles" / "remote_manifest" / "tasks" / "main.yml")
                     if "kubernetes.core.k8s" in t]
    role_manager = role_apply["kubernetes.core.k8s"]["server_side_apply"]["field_manager"]
    ssa = k8s.get("server_side_apply") or {}
    if not k8s.get("apply") or k8s.get("state") != "present" or not ssa:
        problems.append("the selector must be applied server-side (state present, apply)")
    elif ssa.get("field_manager") in (None, role_manager):
        # Re-applying the upstream manifest with the same manager would remove the selector.
        problems.append(f"use a field manager other than {role_manager!r} (remote_manifest's)")
    definition = k8s["definition"]
    if definition.get("metadata") != {"name": "{{ nvidia_device_plugin_daemonset }}",
                                      "namespace": "kube-system"}:
        problems.append(f"wrong DaemonSet: {definition.get('metadata')}")
    # Only the selector: the upstream manifest owns every other field.
    selector_only = {"template": {"spec": {"nodeSelector": "{{ gpu_node_selector }}"}}}
    if definition.get("spec") != selector_only:
        problems.append(f"the apply must hold only spec.template.spec.nodeSelector: {definition}")
    return problems


def test_the_device_plugin_runs_on_the_gpu_node_only() -> None:
    """NVIDIA's static DaemonSet has no node selector; post_k8s gives it the GPU label."""
    assert device_plugin_problems(tasks("post_k8s/post_k8s_configure.yml")) == []
    values = rendered_vars("gpu_node_selector", "nvidia_device_plugin_daemonset")
    # The label Kubespray puts on the GPU node, which training's podSpecPatch selects too.
    gpu = load(KUBESPRAY_INVENTORY / "group_vars" / "gpu.yml")
    assert values["gpu_node_selector"] == gpu["node_labels"] == {"gourmetgram.io/gpu": "true"}
    # The name of the DaemonSet in NVIDIA's deployments/static/nvidia-device-plugin.yml.
    assert values["nvidia_device_plugin_daemonset"] == "nvidia-device-plugin-daemonset"


def test_device_plugin_check_catches_each_mistake() -> None:
    original = tasks("post_k8s/post_k8s_configure.yml")
    (index,) = [i for i, t in enumerate(original) if t["name"].startswith("Run the NVIDIA")]

    def changed(change) -> list[str]:
        copy = yaml.safe_load(yaml.safe_dump(original))
        change(copy, copy[index]["kubernetes.core.k8s"])
        return device_plugin_problems(copy)

    assert changed(lambda ts, k: ts.pop(index))
    assert changed(lambda ts, k: ts.insert(0, ts.pop(index)))
    assert changed(lambda ts, k: ts[index].pop("when"))
    assert changed(lambda ts, k: k["server_side_apply"].update(field_manager="gourmetgram-lab"))
    assert changed(lambda ts, k: k.pop("server_side_apply"))
    assert changed(lambda ts, k: k["definition"]["metadata"].update(namespace="default"))
    assert changed(lambda ts, k: k["definition"]["spec"]["template"]["spec"].update(
        tolerations=[]))
# Kubespray's Corefile templates, the lines that consume the lab's DNS variables
# (roles/kubernetes-apps/ansible/templates/nodelocaldns-config.yml.j2, ".:53" zone, and
# coredns-config.yml.j2, ".:53" zone), with nodelocaldns' upstreamForwardTarget as
# roles/kubernetes-apps/ansible/tasks/nodelocaldns.yml computes it. The submodule is not
# checked out here: the lines were read from stored copies of Kubespray near v2.31.0 (no
# copy at the tag's commit was available), and docs/advanced/dns-stack.md documents the
# variables. Rendered with Jinja, as Kubespray does, from the lab's inventory values.
NODELOCALDNS_DEFAULT_ZONE = """\
    .:53 {
{% if nodelocaldns_additional_configs is defined %}
        {{ nodelocaldns_additional_configs | indent(width=8, first=False) }}
{% endif %}
        errors
        cache 30
        reload
        loop
        bind {{ nodelocaldns_ip }}
        forward . {{ upstreamForwardTarget }}
    }
"""
UPSTREAM_FORWARD_TARGET = (
    "{%- if resolvconf_mode == 'host_resolvconf' and upstream_dns_servers is defined"
    " and upstream_dns_servers|length > 0 %}{{ upstream_dns_servers|join(' ') }}"
    "{%- else %}/etc/resolv.conf{%- endif %}"
)
COREDNS_FORWARD = (
    "forward . {{ upstream_dns_servers | join(' ') if upstream_dns_servers is defined and"
    " upstream_dns_servers | length > 0 else '/etc/resolv.conf' }} {"
)


def render(template: str, values: dict[str, Any]) -> str:
    """Render a Jinja template the way Ansible's template module does (trim_blocks)."""
    import jinja2

    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined)
    return env.from_string(template).render(**values)


def nodelocaldns_default_zone(settings: dict[str, Any]) -> list[str]:
    """The lines of nodelocaldns' ".:53" zone that Kubespray renders from these settings."""
    values = {"nodelocaldns_ip": "169.254.25.10", "resolvconf_mode": "host_resolvconf"} | settings
    values["upstreamForwardTarget"] = render(UPSTREAM_FORWARD_TARGET, values).strip()
    return render(NODELOCALDNS_DEFAULT_ZONE, values).splitlines()


def test_cluster_dns_forwards_to_public_resolvers_and_answers_aaaa_empty() -> None:
    """KVM@TACC: pods resolve through 8.8.8.8 and 1.1.1.1 and get no IPv6 answers.

    Templates checked (Kubespray, roles/kubernetes-apps/ansible/templates/):
    nodelocaldns-config.yml.j2 ``.:53 {`` then ``{% if nodelocaldns_additional_configs is
    defined %}`` ``{{ nodelocaldns_additional_configs | indent(width=8, first=False) }}`` and
    ``forward . {{ upstreamForwardTarget }}``; coredns-config.yml.j2 ``forward . {{
    upstream_dns_servers | join(' ') if upstream_dns_servers is defined and
    upstream_dns_servers | length > 0 else '/etc/resolv.conf' }} {``.
    """
    settings = kubespray_vars()
    # upstreamForwardTarget uses upstream_dns_servers only in Kubespray's default mode.
    assert settings.get("resolvconf_mode", "host_resolvconf") == "host_resolvconf"
    assert settings.get("enable_nodelocaldns", True) is True
    assert settings["upstream_dns_servers"] == ["8.8.8.8", "1.1.1.1"]
    assert render(COREDNS_FORWARD, settings) == "forward . 8.8.8.8 1.1.1.1 {"
    zone = nodelocaldns_default_zone(settings)
    assert "        forward . 8.8.8.8 1.1.1.1" in zone
    # The template plugin block, as a block of the zone: opened and closed at its indent.
    start = zone.index("        template IN AAAA {")
    assert zone[start + 1:start + 3] == ["            rcode NOERROR", "        }"]
    assert sum(line.count("{") for line in zone) == sum(line.count("}") for line in zone)


def test_pre_k8s_turns_ipv6_off_on_ens3_and_dns_off_on_ens4() -> None:
    """The host half of KVM@TACC's networking: sysctl on ens3, netplan and a check on ens4."""
    settings = load(ANSIBLE / "group_vars" / "all.yml")
    assert settings["pre_k8s_public_interface"] == "ens3"
    assert settings["pre_k8s_private_interface"] == "ens4"
    (play,) = [p for p in load(ANSIBLE / "pre_k8s" / "pre_k8s_configure.yml")
               if p["hosts"] == "nodes"]
    steps = play["tasks"]
    sysctls = {render(t["ansible.posix.sysctl"]["name"], settings): t["ansible.posix.sysctl"]
               for t in steps if "ansible.posix.sysctl" in t}
    ipv6 = sysctls["net.ipv6.conf.ens3.disable_ipv6"]
    assert ipv6["value"] == "1" and ipv6["state"] == "present" and ipv6["sysctl_set"] is True
    assert ipv6["sysctl_file"].startswith("/etc/sysctl.d/")
    written = netplan_overrides(steps, settings)
    assert set(written) == {"ens3", "ens4"}
    # ens3: netplan 1.0 gives every interface it manages IPv6 link-local addressing unless
    # the list is empty, and networkd then writes disable_ipv6=0, undoing the sysctl above.
    assert written["ens3"] == {"link-local": []}
    assert written["ens4"] == {"dhcp4-overrides": {"use-dns": False, "use-domains": False}}
    netplans = [t for t in steps
                if t.get("ansible.builtin.copy", {}).get("dest", "").startswith("/etc/netplan/")]
    (handler,) = play["handlers"]
    assert handler["ansible.builtin.command"] == "netplan apply"
    for netplan in netplans:
        assert netplan["ansible.builtin.copy"]["mode"] == "0600"  # netplan warns otherwise
        assert netplan["notify"] == handler["name"]
    # The changes are applied, then checked, before the next task relies on them.
    names = [t["name"] for t in steps]
    commands = [str(t.get("ansible.builtin.command", "")) for t in steps]
    flush = [t.get("ansible.builtin.meta") for t in steps].index("flush_handlers")
    (read,) = [i for i, c in enumerate(commands) if c.startswith("resolvectl dns ")]
    assert render(commands[read], settings) == "resolvectl dns ens4"
    assert max(names.index(n["name"]) for n in netplans) < flush < read
    assert "trim == ''" in steps[read + 1]["ansible.builtin.assert"]["that"]
    (ipv6_read,) = [i for i, c in enumerate(commands) if c.startswith("sysctl -n ")]
    assert render(commands[ipv6_read], settings) == "sysctl -n net.ipv6.conf.ens3.disable_ipv6"
    assert flush < ipv6_read
    assert "trim == '1'" in steps[ipv6_read + 1]["ansible.builtin.assert"]["that"]


def netplan_overrides(steps: list[dict], settings: dict[str, Any]) -> dict[str, dict]:
    """What the playbook's netplan files set, by interface (netplan merges them by id)."""
    merged: dict[str, dict] = {}
    for t in steps:
        copy = t.get("ansible.builtin.copy", {})
        if copy.get("dest", "").startswith("/etc/netplan/"):
            network = yaml.safe_load(render(copy["content"], settings))["network"]
            assert network["version"] == 2, copy["dest"]
            for name, settings_of in network["ethernets"].items():
                merged[name] = merged.get(name, {}) | settings_of
    return merged


def test_netplan_check_catches_the_missing_link_local_override() -> None:
    """Without the ens3 file, nothing keeps networkd from turning IPv6 back on."""
    settings = load(ANSIBLE / "group_vars" / "all.yml")
    (play,) = [p for p in load(ANSIBLE / "pre_k8s" / "pre_k8s_configure.yml")
               if p["hosts"] == "nodes"]
    without = [t for t in play["tasks"] if "public-ipv6" not in
               t.get("ansible.builtin.copy", {}).get("dest", "")]
    assert len(without) == len(play["tasks"]) - 1
    assert "ens3" not in netplan_overrides(without, settings)


def test_generated_secret_fixed_values_and_copies_with_ansible(tmp_path: Path) -> None:
    """Evaluate the role's own expressions with Ansible: fixed and random keys, and the copy."""
    role = load(ANSIBLE / "roles" / "generated_secret" / "tasks" / "main.yml")
    (create,) = [t for t in role if "generated_secret_values" in t.get("vars", {})]
    (copy,) = [t for t in role if "Copy keys" in t["name"]]
    assert copy["kubernetes.core.k8s"]["definition"]["metadata"]["namespace"] == (
        "{{ generated_secret_copy_namespace }}")
    playbook = [{
        "name": "Evaluate", "hosts": "localhost", "gather_facts": False,
        "vars": {
            "generated_secret_keys": [{"key": "username", "value": "admin"},
                                      {"key": "password", "length": 32}],
            "generated_secret_values": create["vars"]["generated_secret_values"],
            "generated_secret_copy_keys": ["username", "password"],
            "generated_secret_original": {"resources": [{"data": {
                "username": "YWRtaW4=", "password": "cHc=", "flask-secret-key": "a2V5"}}]},
            "copied": copy["kubernetes.core.k8s"]["definition"]["data"],
        },
        "tasks": [{"name": "Show", "ansible.builtin.debug": {"var": v}}
                  for v in ("generated_secret_values", "copied")],
    }]
    path = tmp_path / "evaluate.yml"
    path.write_text(yaml.safe_dump(playbook))
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(path)],
        capture_output=True, text=True,
        env={"ANSIBLE_STDOUT_CALLBACK": "json", "PATH": str(BIN), "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    tasks_run = json.loads(result.stdout)["plays"][0]["tasks"]
    values, copied = (t["hosts"]["localhost"][v] for t, v in
                      zip(tasks_run, ("generated_secret_values", "copied"), strict=True))
    assert values["username"] == "admin"
    assert re.fullmatch(r"[A-Za-z0-9]{32}", values["password"])
    assert copied == {"username": "YWRtaW4=", "password": "cHc="}  # no flask-secret-key
