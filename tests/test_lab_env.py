"""The student's values file (tools/lab_env.py), env.sh, and the GPU node's inventory parts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tools import lab_env

REPO = Path(__file__).resolve().parent.parent
ANSIBLE_INVENTORY_BIN = Path(sys.executable).parent / "ansible-inventory"


def test_values_survive_a_round_trip_and_bash_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "lab.env"
    lab_env.save({"SUFFIX": "ada-l", "USE_GPU": False, "PROJECT": "CHI-123456"}, path)
    lab_env.save({"FLOATING_IP": "203.0.113.7", "KEY_NAME": "my key's name"}, path)
    expected = {"SUFFIX": "ada-l", "USE_GPU": "false", "PROJECT": "CHI-123456",
                "FLOATING_IP": "203.0.113.7", "KEY_NAME": "my key's name"}
    assert lab_env.load(path) == expected
    names = " ".join(f"{n}=${{{n}}}" for n in expected)
    shell = subprocess.run(["bash", "-c", f'set -a; . "{path}"; echo "{names}"'],
                           capture_output=True, text=True, check=True)
    assert shell.stdout.strip() == " ".join(f"{n}={v}" for n, v in expected.items())


def test_bad_values_are_refused_and_the_file_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "lab.env"
    lab_env.save({"SUFFIX": "ada"}, path)
    before = path.read_text()
    with pytest.raises(ValueError, match="unknown lab value 'FLOATING_PI'"):
        lab_env.save({"FLOATING_PI": "1.2.3.4"}, path)
    with pytest.raises(ValueError, match="one non-empty line"):
        lab_env.save({"SUFFIX": ""}, path)
    assert path.read_text() == before


def test_a_missing_value_names_the_notebook_that_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "lab.env"
    lab_env.save({"SUFFIX": "ada"}, path)
    assert lab_env.require(["SUFFIX"], path) == {"SUFFIX": "ada"}
    with pytest.raises(KeyError, match="FLOATING_IP not in .*notebook .*3 \\(FLOATING_IP\\)"):
        lab_env.require(["SUFFIX", "FLOATING_IP"], path)
    assert lab_env.load(tmp_path / "absent.env") == {}


def test_a_malformed_line_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "lab.env"
    path.write_text("SUFFIX=ada\nexport FLOATING_IP 1.2.3.4\n")
    with pytest.raises(ValueError, match="lab.env:2: expected NAME=value"):
        lab_env.load(path)


def test_the_command_line_writes_where_lab_values_points(tmp_path: Path) -> None:
    path = tmp_path / "values.env"
    env = {"LAB_VALUES": str(path), "PATH": "/usr/bin:/bin"}
    tool = [sys.executable, str(REPO / "tools" / "lab_env.py")]
    subprocess.run([*tool, "set", "FLOATING_IP=198.51.100.2"], env=env, check=True,
                   capture_output=True)
    got = subprocess.run([*tool, "get", "FLOATING_IP"], env=env, check=True,
                         capture_output=True, text=True)
    assert got.stdout.strip() == "198.51.100.2"
    missing = subprocess.run([*tool, "get", "SUFFIX"], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "run notebook 0" in missing.stderr


def inventory_list(*sources: Path) -> dict:
    """What the real ansible-inventory makes of the given sources."""
    args = [str(ANSIBLE_INVENTORY_BIN), "--list"]
    for source in sources:
        args += ["-i", str(source)]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    assert "Unable to parse" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def write_parts(tmp_path: Path, private_ips: dict[str, str]) -> tuple[Path, Path]:
    """The lab's inventory plus its GPU part, and a copy of Kubespray's with its part."""
    parts = lab_env.gpu_inventories(private_ips)
    lab = tmp_path / "inventory-gpu.yml"
    lab.write_text(parts[lab_env.LAB_GPU_INVENTORY])
    kubespray = tmp_path / "mycluster"
    kubespray.mkdir()
    shutil.copy(lab_env.KUBESPRAY_GPU_INVENTORY.parent / "hosts.yaml", kubespray / "hosts.yaml")
    (kubespray / "gpu-node.yml").write_text(parts[lab_env.KUBESPRAY_GPU_INVENTORY])
    return lab, kubespray


def test_the_gpu_node_joins_both_inventories_from_terraform_output(tmp_path: Path) -> None:
    ips = {"node1": "192.168.1.11", "node2": "192.168.1.12", "node3": "192.168.1.13",
           "gpu-node": "192.168.1.14"}
    lab, kubespray = write_parts(tmp_path, ips)
    listed = inventory_list(REPO / "ansible" / "inventory.yml", lab)
    assert listed["gpu"]["hosts"] == ["gpu-node"]
    gpu_vars = listed["_meta"]["hostvars"]["gpu-node"]
    assert gpu_vars["ansible_host"] == "192.168.1.14" and gpu_vars["ansible_user"] == "cc"
    cluster = inventory_list(kubespray)
    assert cluster["gpu"]["hosts"] == ["gpu-node"]
    assert cluster["_meta"]["hostvars"]["gpu-node"]["ip"] == "192.168.1.14"
    assert "gpu" in cluster["kube_node"]["children"]


def test_without_a_gpu_node_the_parts_add_nothing(tmp_path: Path) -> None:
    lab, kubespray = write_parts(tmp_path, {"node1": "192.168.1.11"})
    listed = inventory_list(REPO / "ansible" / "inventory.yml", lab)
    assert "gpu-node" not in listed["_meta"]["hostvars"]
    assert "gpu-node" not in inventory_list(kubespray)["_meta"]["hostvars"]


def test_the_generated_parts_are_ignored_by_git() -> None:
    for path in (lab_env.LAB_GPU_INVENTORY, lab_env.KUBESPRAY_GPU_INVENTORY, REPO / "lab.env"):
        rel = path.relative_to(REPO)
        assert subprocess.run(["git", "check-ignore", "-q", rel], cwd=REPO).returncode == 0, rel


def source_env(tmp_path: Path, extra: str = "", **env: str) -> dict[str, str]:
    """The variables env.sh exports, sourced by bash in a clean environment."""
    base = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "PRIVATE_KEY": str(tmp_path / "none")}
    script = f'source "{REPO}/env.sh" >/dev/null && {extra} env -0'
    out = subprocess.run(["bash", "-c", script], env={**base, **env}, capture_output=True,
                         text=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def test_env_sh_loads_the_values_and_points_the_tools_at_the_lab(tmp_path: Path) -> None:
    values = tmp_path / "lab.env"
    lab_env.save({"FLOATING_IP": "203.0.113.9", "USE_GPU": True}, values)
    env = source_env(tmp_path, LAB_VALUES=str(values))
    assert env["REPO_DIR"] == str(REPO)
    assert env["FLOATING_IP"] == "203.0.113.9" and env["USE_GPU"] == "true"
    assert env["ANSIBLE_CONFIG"] == str(REPO / "ansible" / "ansible.cfg")
    assert env["PATH"].startswith("/work/.local/bin:")
    assert env["ANSIBLE_INVENTORY"].split(",")[0] == str(REPO / "ansible" / "inventory.yml")
    kind = source_env(tmp_path, LAB_VALUES=str(values), LAB_INVENTORY="/x/inventory-kind.yml")
    assert kind["ANSIBLE_INVENTORY"] == "/x/inventory-kind.yml"


def test_env_sh_twice_changes_nothing(tmp_path: Path) -> None:
    once = source_env(tmp_path)
    twice = source_env(tmp_path, extra=f'source "{REPO}/env.sh" >/dev/null &&')
    assert twice["PATH"] == once["PATH"]


def test_env_sh_says_what_to_do_without_a_key(tmp_path: Path) -> None:
    """A missing key is not skipped in silence: the agent it would feed is what ssh needs."""
    def sourced(key: Path) -> subprocess.CompletedProcess:
        env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "PRIVATE_KEY": str(key),
               "LAB_AGENT_SOCK": str(tmp_path / "agent.sock")}
        script = (f'source "{REPO}/env.sh" >/dev/null && '
                  'echo "agent=${SSH_AUTH_SOCK:-}" && echo "pid=${SSH_AGENT_PID:-}"')
        return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)

    missing = sourced(tmp_path / "none")
    assert missing.returncode == 0
    assert f"No SSH key at {tmp_path / 'none'}" in missing.stderr
    assert "Upload an SSH key" in missing.stderr and "agent=\n" in missing.stdout
    key = tmp_path / "id_rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    present = sourced(key)
    try:
        assert present.returncode == 0 and "No SSH key" not in present.stderr
        assert f"agent={tmp_path / 'agent.sock'}" in present.stdout
    finally:  # stop the agent this test started, by its id
        pid = present.stdout.rpartition("pid=")[2].strip()
        if pid:
            os.kill(int(pid), signal.SIGTERM)
