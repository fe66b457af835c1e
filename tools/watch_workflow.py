"""Wait for an Argo workflow and say, in plain lines, what it is doing.

One line whenever the running steps change, and one every ``--every`` seconds while they
do not; at the end, the outcome and, for a failure, each failed step with its message.
Exit status: 0 succeeded, 1 failed, 2 still running at the timeout (it goes on in the cluster).

    python3 tools/watch_workflow.py gourmetgram-train-image --timeout 60m
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime

DONE = {"Succeeded", "Failed", "Error"}


def seconds(text: str) -> int:
    """Parse a duration such as 90, 90s, 45m or 1h."""
    units = {"s": 1, "m": 60, "h": 3600}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def clock(total: float) -> str:
    """A duration as 3m05s (or 1h02m)."""
    total = int(total)
    if total >= 3600:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 60}m{total % 60:02d}s"


def started(text: str | None) -> float | None:
    """An Argo timestamp (2026-12-03T09:00:00Z) as seconds since the epoch."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def running_steps(workflow: dict) -> list[tuple[str, float | None]]:
    """The workflow's pods that are running now, as (step name, start time)."""
    nodes = workflow.get("status", {}).get("nodes", {}) or {}
    steps = [(n.get("displayName", n.get("name", "?")), started(n.get("startedAt")))
             for n in nodes.values() if n.get("type") == "Pod" and n.get("phase") == "Running"]
    return sorted(steps, key=lambda step: step[1] or 0)


def describe(workflow: dict, now: float) -> str:
    """One line: the phase and the running steps, each with how long it has run."""
    phase = workflow.get("status", {}).get("phase") or "Pending"
    steps = running_steps(workflow)
    if not steps:
        return f"{phase}: waiting for the next step to start"
    parts = [f"{name} ({clock(now - since)})" if since else name for name, since in steps]
    return f"{phase}: running {', '.join(parts)}"


def failures(workflow: dict) -> list[str]:
    """Each failed step with its message, innermost first."""
    nodes = workflow.get("status", {}).get("nodes", {}) or {}
    failed = [n for n in nodes.values() if n.get("phase") in ("Failed", "Error")
              and n.get("type") == "Pod"]
    lines = [f"{n.get('displayName', '?')}: {n.get('message', 'no message')}" for n in failed]
    return lines or [workflow.get("status", {}).get("message", "no message")]


def kubectl_json(args: list[str]) -> dict | None:
    """`kubectl ARGS -o json`, parsed; None when the object does not exist (yet)."""
    result = subprocess.run(["kubectl", *args, "-o", "json"], capture_output=True, text=True)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def kubectl_get(name: str, namespace: str) -> dict | None:
    """The workflow as kubectl returns it, or None when it does not exist (yet)."""
    return kubectl_json(["get", "workflow", name, "-n", namespace])


def watch(name: str, get: Callable[[], dict | None], timeout: float, every: float,
          poll: float = 10, now: Callable[[], float] = time.time,
          sleep: Callable[[float], None] = time.sleep, say: Callable[[str], None] = print) -> int:
    """Poll until the workflow ends or the timeout passes; return the exit status."""
    begin = now()
    last_key: object = None
    last_said = -every
    while True:
        workflow = get()
        elapsed = now() - begin
        if workflow is None:
            line, key = "not created yet", None
        else:
            phase = workflow.get("status", {}).get("phase")
            if phase in DONE:
                say(f"{clock(elapsed):>7}  {name} {phase}")
                if phase == "Succeeded":
                    return 0
                for failure in failures(workflow):
                    say(f"         failed step {failure}")
                say(f"         details: argo get -n argo {name}; logs: argo logs -n argo {name}")
                return 1
            line = describe(workflow, now())
            key = (workflow.get("status", {}).get("phase"), [n for n, _ in running_steps(workflow)])
        if elapsed >= timeout:
            say(f"{clock(elapsed):>7}  still {line} after the {clock(timeout)} this wait allows; "
                f"it goes on in the cluster: argo get -n argo {name}")
            return 2
        if key != last_key or elapsed - last_said >= every:
            say(f"{clock(elapsed):>7}  {line}")
            last_key, last_said = key, elapsed
        sleep(poll)


def main(argv: list[str] | None = None) -> int:
    """Command line: the workflow's name, a timeout and how often to repeat a line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--namespace", "-n", default="argo")
    parser.add_argument("--timeout", default="60m", help="such as 45m or 1h (default 60m)")
    parser.add_argument("--every", default="2m", help="repeat an unchanged line this often")
    args = parser.parse_args(argv)
    return watch(args.name, lambda: kubectl_get(args.name, args.namespace),
                 seconds(args.timeout), seconds(args.every))


if __name__ == "__main__":
    sys.exit(main())
