"""The student's values, typed once: read and update ``lab.env`` at the top of the repository.

``lab.env`` holds ``NAME=value`` lines that ``env.sh`` loads into every Bash notebook and
terminal, and that the Python notebooks read with ``load``. Notebooks 0 and 1 write the
project, site, suffix, key name, lease name and GPU choice; notebook 3 the floating IP;
notebook 7 the version it trained (TRAINED_VERSION), which notebook 8 promotes.

    python tools/lab_env.py set FLOATING_IP=203.0.113.7     # from Bash
    python tools/lab_env.py gpu-inventory < private_ips.json  # Terraform's private_ips output
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
# The values each notebook may write, so that a typo in a name fails where it is made.
KNOWN = {"SITE", "PROJECT", "SUFFIX", "KEY_NAME", "LEASE_NAME", "USE_GPU", "FLOATING_IP",
         "TRAINED_VERSION"}
GPU_NODE = "gpu-node"
# The generated inventory parts that add the GPU node (git ignores both).
LAB_GPU_INVENTORY = REPO / "ansible" / "inventory-gpu.yml"
KUBESPRAY_GPU_INVENTORY = REPO / "ansible" / "k8s" / "inventory" / "mycluster" / "gpu-node.yml"


def values_path() -> Path:
    """Where the values live: $LAB_VALUES if set (kind runs), else lab.env in the repository."""
    return Path(os.environ.get("LAB_VALUES", REPO / "lab.env"))


def load(path: Path | None = None) -> dict[str, str]:
    """The values in the file, as strings; an empty dict when it does not exist yet."""
    path = path or values_path()
    if not path.exists():
        return {}
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, raw = line.partition("=")
        if not sep or not NAME.match(name):
            raise ValueError(f"{path}:{number}: expected NAME=value, got {line!r}")
        parts = shlex.split(raw)
        values[name] = parts[0] if parts else ""
    return values


def require(names: list[str], path: Path | None = None) -> dict[str, str]:
    """The named values; a clear error naming the notebook that writes a missing one."""
    values = load(path)
    missing = [name for name in names if not values.get(name)]
    if missing:
        raise KeyError(
            f"{', '.join(missing)} not in {path or values_path()}: run notebook 0 (SITE, PROJECT, "
            "SUFFIX, KEY_NAME), 1 (LEASE_NAME, USE_GPU) or 3 (FLOATING_IP) first"
        )
    return {name: values[name] for name in names}


def save(updates: dict[str, object], path: Path | None = None) -> dict[str, str]:
    """Set the given values (others are kept) and return the whole file's values."""
    path = path or values_path()
    values = load(path)
    for name, value in updates.items():
        if name not in KNOWN:
            raise ValueError(f"unknown lab value {name!r}; known: {', '.join(sorted(KNOWN))}")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if "\n" in text or not text:
            raise ValueError(f"{name} must be one non-empty line, got {text!r}")
        values[name] = text
    lines = [f"{name}={shlex.quote(value)}" for name, value in values.items()]
    path.write_text("# Written by the lab's notebooks (tools/lab_env.py); never committed.\n"
                    + "\n".join(lines) + "\n")
    return values


def gpu_inventories(private_ips: dict[str, str]) -> dict[Path, str]:
    """The two inventory parts that add gpu-node, from Terraform's private_ips output."""
    address = private_ips.get(GPU_NODE)
    note = "# Written by tools/lab_env.py from Terraform's private_ips output; never committed.\n"
    if address is None:
        empty = note + "# No gpu-node in this deployment.\nall: {}\n"
        return {LAB_GPU_INVENTORY: empty, KUBESPRAY_GPU_INVENTORY: empty}
    lab = (f"{note}all:\n  children:\n    nodes:\n      children:\n        gpu:\n"
           f"          hosts:\n            {GPU_NODE}:\n              ansible_host: {address}\n")
    kubespray = (f"{note}all:\n  children:\n    gpu:\n      hosts:\n        {GPU_NODE}:\n"
                 f"          ansible_host: {address}\n          ip: {address}\n"
                 f"          access_ip: {address}\n")
    return {LAB_GPU_INVENTORY: lab, KUBESPRAY_GPU_INVENTORY: kubespray}


def main(argv: list[str]) -> int:
    """Command line: ``set NAME=value ...``, ``get NAME`` or ``gpu-inventory`` (JSON on stdin)."""
    if len(argv) >= 2 and argv[0] == "set":
        pairs = [arg.partition("=") for arg in argv[1:]]
        if any(not sep for _, sep, _ in pairs):
            print("usage: lab_env.py set NAME=value ...", file=sys.stderr)
            return 2
        values = save({name: value for name, _, value in pairs})
        print(f"{values_path()}: " + " ".join(f"{k}={v}" for k, v in values.items()))
        return 0
    if len(argv) == 2 and argv[0] == "get":
        print(require([argv[1]])[argv[1]])
        return 0
    if argv == ["gpu-inventory"]:
        private_ips = json.load(sys.stdin)
        for path, text in gpu_inventories(private_ips).items():
            path.write_text(text)
            print(f"Wrote {path.relative_to(REPO)}")
        address = private_ips.get(GPU_NODE)
        print(f"GPU node: {address}" if address else "GPU node: none in this deployment")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
