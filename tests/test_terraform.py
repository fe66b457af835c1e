"""Offline checks of tf/kvm: every file parses, every reference resolves, checkov passes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from tests.k8s_render import versions

REPO = Path(__file__).resolve().parent.parent
TF = REPO / "tf" / "kvm"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
ROLE_FILES = ("provider.tf", "versions.tf", "variables.tf", "data.tf", "main.tf", "outputs.tf")

# References inside HCL expressions, e.g. ${var.suffix}, local.all_nodes,
# data.openstack_networking_network_v2.sharednet1, openstack_networking_port_v2.private.
VAR_REF = re.compile(r"(?<![\w.])var\.([A-Za-z_][\w-]*)")
LOCAL_REF = re.compile(r"(?<![\w.])local\.([A-Za-z_][\w-]*)")
DATA_REF = re.compile(r"(?<![\w.])data\.([a-z][\w]*)\.([A-Za-z_][\w-]*)")
RESOURCE_REF = re.compile(r"(?<![\w.])(openstack_[a-z0-9_]+)\.([A-Za-z_][\w-]*)")


def unquote(label: str) -> str:
    """python-hcl2 keeps the quotes of block labels; drop them."""
    return label.strip('"')


def parse(path: Path) -> dict[str, Any]:
    """Parse one .tf file; a syntax error fails with the file's name."""
    with path.open() as f:
        try:
            return hcl2.load(f)
        except Exception as e:  # python-hcl2 raises lark errors of several kinds
            raise AssertionError(f"{path.relative_to(REPO)} does not parse: {e}") from e


def merged_config(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """All blocks of the .tf files in a folder, merged by block type."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.tf")):
        for block_type, blocks in parse(path).items():
            merged.setdefault(block_type, []).extend(blocks)
    return merged


@pytest.fixture(scope="module")
def config() -> dict[str, list[dict[str, Any]]]:
    """All blocks of tf/kvm, merged by block type."""
    return merged_config(TF)


def labelled(config: dict[str, list[dict[str, Any]]], block_type: str) -> dict[str, Any]:
    """Blocks with one label (variable, output) by name."""
    return {unquote(k): v for block in config.get(block_type, []) for k, v in block.items()}


def typed(config: dict[str, list[dict[str, Any]]], block_type: str) -> dict[tuple[str, str], Any]:
    """Blocks with two labels (resource, data) by (type, name)."""
    found = {}
    for block in config.get(block_type, []):
        for kind, named in block.items():
            for name, body in named.items():
                found[(unquote(kind), unquote(name))] = body
    return found


def locals_of(config: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Every local value by name."""
    return {
        k: v for block in config.get("locals", []) for k, v in block.items() if k != "__is_block__"
    }


def plain(node: Any) -> Any:
    """A parsed value with string literals unquoted ("x" -> x); expressions stay as they are."""
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return node[1:-1]
    if isinstance(node, dict):
        return {unquote(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node


def strings(node: Any) -> list[str]:
    """Every string (expressions included) anywhere in a parsed block."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


def test_files_are_split_by_role_and_all_parse() -> None:
    present = {p.name for p in TF.glob("*.tf")}
    assert present == set(ROLE_FILES), present
    for name in ROLE_FILES:
        assert parse(TF / name), f"{name} is empty"


def undeclared_references(config: dict[str, list[dict[str, Any]]]) -> list[str]:
    """var.*, local.*, data.* and resource references that no block declares."""
    variables = set(labelled(config, "variable"))
    local_names = set(locals_of(config))
    resources = set(typed(config, "resource"))
    data = set(typed(config, "data"))
    text = "\n".join(strings(config))
    problems = [f"var.{n}" for n in VAR_REF.findall(text) if n not in variables]
    problems += [f"local.{n}" for n in LOCAL_REF.findall(text) if n not in local_names]
    problems += [f"data.{t}.{n}" for t, n in DATA_REF.findall(text) if (t, n) not in data]
    without_data = DATA_REF.sub("", text)
    problems += [
        f"{t}.{n}" for t, n in RESOURCE_REF.findall(without_data) if (t, n) not in resources
    ]
    return sorted(set(problems))


def test_every_reference_resolves_to_a_declaration(config: dict[str, list[dict[str, Any]]]) -> None:
    assert undeclared_references(config) == []


def test_every_variable_is_used(config: dict[str, list[dict[str, Any]]]) -> None:
    used = set(
        VAR_REF.findall("\n".join(strings({k: v for k, v in config.items() if k != "variable"})))
    )
    assert set(labelled(config, "variable")) - used == set()


def test_the_reference_check_catches_a_typo(tmp_path: Path) -> None:
    # The check above must be able to fail: a misspelled variable is reported.
    for path in TF.glob("*.tf"):
        (tmp_path / path.name).write_text(path.read_text())
    broken = (TF / "main.tf").read_text().replace("var.suffix", "var.sufix", 1)
    assert "var.sufix" in broken
    (tmp_path / "main.tf").write_text(broken)
    assert undeclared_references(merged_config(tmp_path)) == ["var.sufix"]


def test_provider_is_pinned_to_versions_yml(config: dict[str, list[dict[str, Any]]]) -> None:
    required = plain(config["terraform"][0]["required_providers"][0]["openstack"])
    assert required["source"] == "terraform-provider-openstack/openstack"
    assert required["version"] == versions()["openstack_provider_version"]
    minimum = re.fullmatch(
        r">= (\d+)\.(\d+)\.(\d+)", plain(config["terraform"][0]["required_version"])
    )
    assert minimum, "required_version should be a plain lower bound"
    pinned = tuple(int(x) for x in str(versions()["terraform_version"]).split("."))
    assert pinned >= tuple(int(x) for x in minimum.groups())


def test_variables_have_the_lab_defaults(config: dict[str, list[dict[str, Any]]]) -> None:
    variables = plain(labelled(config, "variable"))
    assert {"suffix", "key", "nodes", "reservation", "gpu_reservation"} <= set(variables)
    assert "default" not in variables["suffix"] and "default" not in variables["reservation"]
    assert variables["nodes"]["default"] == {
        "node1": "192.168.1.11",
        "node2": "192.168.1.12",
        "node3": "192.168.1.13",
    }
    assert variables["gpu_reservation"]["default"] is None
    assert variables["gpu_node_ip"]["default"] == "192.168.1.14"
    assert variables["image_name"]["default"] == "CC-Ubuntu24.04"


def contributing_ports() -> dict[int, str]:
    """The 'Ports on the floating IP' table of CONTRIBUTING.md."""
    text = (REPO / "CONTRIBUTING.md").read_text().split("## Ports on the floating IP", 1)[1]
    return {
        int(port): service for port, service in re.findall(r"^\| (\d+) \| (.+?) \|$", text, re.M)
    }


def test_security_group_opens_exactly_the_lab_ports(
    config: dict[str, list[dict[str, Any]]],
) -> None:
    ports = locals_of(config)["public_ports"]
    assert sorted(ports.values()) == sorted(contributing_ports()), "see CONTRIBUTING.md"
    assert 6443 in ports.values() and 22 in ports.values()
    rule = plain(
        typed(config, "resource")[("openstack_networking_secgroup_rule_v2", "lab_ingress")]
    )
    assert rule["for_each"] == "${local.public_ports}"
    assert rule["direction"] == "ingress" and rule["protocol"] == "tcp"
    assert rule["port_range_min"] == rule["port_range_max"] == "${each.value}"


def test_network_layout(config: dict[str, list[dict[str, Any]]]) -> None:
    resources = typed(config, "resource")
    subnet = plain(resources[("openstack_networking_subnet_v2", "private")])
    assert subnet["name"] == "private-subnet-mlops-${var.suffix}"
    assert subnet["no_gateway"] is True
    assert (
        resources[("openstack_networking_network_v2", "private")]["port_security_enabled"] is False
    )
    shared = resources[("openstack_networking_port_v2", "sharednet1")]
    assert shared["security_group_ids"] == ["${openstack_networking_secgroup_v2.lab.id}"]
    data = typed(config, "data")
    assert plain(data[("openstack_networking_network_v2", "sharednet1")])["name"] == "sharednet1"
    fip = resources[("openstack_networking_floatingip_v2", "node1")]
    assert fip["port_id"] == '${openstack_networking_port_v2.sharednet1["node1"].id}'


def test_instances_use_the_reservations(config: dict[str, list[dict[str, Any]]]) -> None:
    node = typed(config, "resource")[("openstack_compute_instance_v2", "node")]
    assert node["for_each"] == "${local.all_nodes}"
    assert "var.gpu_reservation" in node["flavor_id"] and "var.reservation" in node["flavor_id"]
    assert node["key_pair"] == "${var.key}"
    # sharednet1 first: the default route must leave through it.
    assert [n["port"] for n in node["network"]][0].startswith(
        "${openstack_networking_port_v2.sharednet1"
    )
    all_nodes = locals_of(config)["all_nodes"]
    assert '"gpu-node" = var.gpu_node_ip' in all_nodes and "local.gpu_enabled" in all_nodes


def test_outputs(config: dict[str, list[dict[str, Any]]]) -> None:
    outputs = labelled(config, "output")
    assert (
        outputs["floating_ip_out"]["value"] == "${openstack_networking_floatingip_v2.node1.address}"
    )
    assert "private_ips" in outputs


def test_clouds_yaml_template_has_placeholders_only() -> None:
    clouds = yaml.safe_load((TF / "clouds.yaml.template").read_text())["clouds"]["openstack"]
    assert clouds["auth_type"] == "v3applicationcredential"
    assert clouds["region_name"] == "KVM@TACC"
    assert clouds["auth"]["auth_url"] == "https://kvm.tacc.chameleoncloud.org:5000/v3"
    for key in ("application_credential_id", "application_credential_secret"):
        assert clouds["auth"][key].startswith("REPLACE_WITH_"), f"{key} must stay a placeholder"
    secrets = ["tf/kvm/clouds.yaml", "tf/kvm/terraform.tfstate", "tf/kvm/.terraform/providers"]
    ignored = subprocess.run(
        ["git", "check-ignore", *secrets], cwd=REPO, capture_output=True, text=True
    )
    assert ignored.stdout.split() == secrets, (
        "clouds.yaml, state and .terraform/ must be ignored by git"
    )


def run_checkov(directory: Path) -> subprocess.CompletedProcess:
    """checkov's Terraform policies over one directory, with tf/kvm's skip list."""
    assert CHECKOV.exists(), "checkov is installed by `make setup` into .venv-checkov"
    return subprocess.run(
        [
            CHECKOV,
            "-d",
            directory,
            "--framework",
            "terraform",
            "--skip-download",
            "--compact",
            "--quiet",
            "--config-file",
            TF / ".checkov.yaml",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )


def test_checkov_policies_pass() -> None:
    result = run_checkov(TF)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.search(r"Passed checks: (\d+), Failed checks: (\d+)", result.stdout)
    assert passed, result.stdout
    assert int(passed.group(1)) > 0 and passed.group(2) == "0", result.stdout
    # checkov passes a file it cannot parse (and checks nothing in it); count that as failed.
    assert "Parsing errors" not in result.stdout, result.stdout


def test_checkov_would_fail_rdp_open_to_the_world(tmp_path: Path) -> None:
    # Guard against a vacuous run: a rule that opens RDP (3389) to the world must fail.
    (tmp_path / "main.tf").write_text(
        'resource "openstack_networking_secgroup_rule_v2" "db" {\n'
        '  direction = "ingress"\n  ethertype = "IPv4"\n  protocol = "tcp"\n'
        "  port_range_min = 3389\n  port_range_max = 3389\n"
        '  remote_ip_prefix = "0.0.0.0/0"\n  security_group_id = "x"\n}\n'
    )
    result = run_checkov(tmp_path)
    assert result.returncode != 0 and "Failed checks: 1" in result.stdout, result.stdout


def test_checkov_skips_are_justified() -> None:
    text = (TF / ".checkov.yaml").read_text()
    skips = yaml.safe_load(text)["skip-check"]
    assert len(skips) <= 3, "keep the skip list short"
    for check in skips:
        before = text.split(f"- {check}", 1)[0].rstrip().splitlines()
        assert before[-1].lstrip().startswith("#"), f"{check} needs a comment explaining the skip"


def planned_resources(config: dict[str, list[dict[str, Any]]], gpu: bool) -> int:
    """How many resources `terraform plan` adds: one per block, or one per for_each key."""
    variables = labelled(config, "variable")
    nodes = len(plain(variables["nodes"]["default"])) + (1 if gpu else 0)
    sizes = {"${local.all_nodes}": nodes,
             "${local.public_ports}": len(locals_of(config)["public_ports"])}
    total = 0
    for (kind, name), body in typed(config, "resource").items():
        assert "count" not in body, f"{kind}.{name}: count the way for_each is counted"
        total += sizes[body["for_each"]] if "for_each" in body else 1
    return total


def test_notebook_3_states_the_number_of_planned_resources(
        config: dict[str, list[dict[str, Any]]]) -> None:
    """network, subnet, security group and its rules, two ports and an instance a node, an IP."""
    text = (REPO / "snippets" / "3_provision_tf.md").read_text()
    (found,) = re.findall(r"N is (\d+) without the GPU node, (\d+) with it", text)
    assert (int(found[0]), int(found[1])) == (planned_resources(config, gpu=False),
                                              planned_resources(config, gpu=True))
    ports = len(locals_of(config)["public_ports"])
    assert planned_resources(config, gpu=False) == 1 + 1 + 1 + ports + 3 * 3 + 1
