"""The lab doctor: from a report's facts, where the student is and what is wrong, with a next step.

`tools/lab_report.py --doctor` runs it on fresh facts; it judges only facts, so tests give it
recorded ones. A source that could not be read is a problem only once the notebook that
creates it should be done (no cluster before notebook 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

LEASE_WARNING = timedelta(hours=1)
PENDING_LIMIT = timedelta(minutes=5)
FIRST_NOTEBOOK_FIVE_NODES = 3  # node1-node3 (plus gpu-node when the lease has one)


@dataclass(frozen=True)
class Problem:
    """What is wrong, and the next step."""

    what: str
    next_step: str

    def __str__(self) -> str:
        return f"- {self.what}\n  next: {self.next_step}"


def _when(text: str | None) -> datetime | None:
    """A timestamp as an aware datetime (Blazar's have no zone: they are UTC)."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _minutes(delta: timedelta) -> str:
    """A duration as 42 min or 3 h 05 min."""
    total = int(delta.total_seconds() // 60)
    return f"{total // 60} h {total % 60:02d} min" if total >= 60 else f"{total} min"


def lease_problems(lease: dict, now: datetime) -> list[Problem]:
    """A lease that is not active, or ends within the hour."""
    if "error" in lease:
        return []  # before notebook 1, or no python-chi here: nothing to judge
    end = _when(lease.get("end"))
    if lease.get("status") != "ACTIVE":
        return [Problem(f"lease {lease.get('name')} is {lease.get('status')}, not ACTIVE",
                        "look at it under Reservations > Leases in the Chameleon dashboard; "
                        "an ended lease took the VMs with it: start again at notebook 1")]
    if end and end - now < LEASE_WARNING:
        return [Problem(f"lease {lease['name']} ends at {end:%H:%M} UTC, in "
                        f"{_minutes(end - now)}",
                        "extend it now (Reservations > Leases > Update lease in the "
                        "dashboard), or finish the hand-in (make report) and run notebook 9")]
    return []


def node_problems(nodes: list[dict]) -> list[Problem]:
    """NotReady nodes, and nodes under pressure (a disk filling up)."""
    out = []
    for n in nodes:
        if not n["ready"]:
            out.append(Problem(
                f"node {n['name']} is NotReady since {n['since']}: {n['ready_message']}",
                f"kubectl describe node {n['name']}; check the VM runs (openstack server "
                f"list), then on it: sudo systemctl restart containerd kubelet"))
        if "DiskPressure" in n["pressure"]:
            out.append(Problem(
                f"node {n['name']}'s disk is filling up (DiskPressure: "
                f"{n['pressure']['DiskPressure']}); pods get evicted",
                f"free space on {n['name']}: ssh to it and run sudo crictl rmi --prune "
                "(unused images), then kubectl delete pod -n argo --field-selector "
                "status.phase==Succeeded"))
        for kind in ("MemoryPressure", "PIDPressure"):
            if kind in n["pressure"]:
                out.append(Problem(f"node {n['name']} reports {kind}: {n['pressure'][kind]}",
                                   "argo list -n argo --running: stop what you no longer need "
                                   "(argo stop -n argo NAME)"))
    return out


def application_problems(apps: list[dict]) -> list[Problem]:
    """Argo CD applications that are not Synced and Healthy."""
    out = []
    for a in apps:
        if a["sync"] != "Synced" or a["health"] != "Healthy":
            detail = f": {a['health_message']}" if a["health_message"] else ""
            out.append(Problem(
                f"Argo CD application {a['name']} is {a['sync']} and {a['health']}{detail}",
                f"open {a['name']} in the Argo CD UI (port 8888) and read the resource that "
                f"is not green, or: kubectl -n argocd describe application {a['name']}"))
    return out


def _pending_advice(message: str) -> str:
    """The next step for a step the scheduler cannot place, from its message."""
    if "nvidia.com/gpu" in message or "gourmetgram.io/gpu" in message:
        return ("no node can take a GPU pod: submit with -p gpu=false, or add the GPU node "
                "(notebooks 1, 3 and 5 with USE_GPU)")
    if "Insufficient memory" in message or "Insufficient cpu" in message:
        return ("other pods hold the room it needs: argo list -n argo --running, and wait for "
                "them or stop one (argo stop -n argo NAME)")
    if "lock" in message.lower() or "mutex" in message.lower():
        return ("another workflow holds the alias lock gourmetgram-model-aliases: it starts "
                "when that one ends (argo list -n argo --running)")
    if "persistentvolumeclaim" in message.lower():
        return "its volume is not bound: kubectl -n argo get pvc"
    return "kubectl -n argo get pods, then kubectl -n argo describe pod of that step"


def workflow_problems(flows: list[dict], now: datetime) -> list[Problem]:
    """Workflows whose steps (or which, waiting for a lock) have stayed Pending too long."""
    out = []
    for w in flows:
        if w["phase"] not in ("Pending", "Running"):
            continue
        waits = [(p["step"], _when(p["since"]), p["message"]) for p in w["pending"]]
        if w["phase"] == "Pending" and not waits:
            waits = [("the whole workflow", _when(w["created"]), w["message"])]
        for step, since, message in waits:
            if since and now - since >= PENDING_LIMIT:
                out.append(Problem(
                    f"workflow {w['name']} ({w['template']}): {step} has been Pending for "
                    f"{_minutes(now - since)}: {message or 'no message from the scheduler'}",
                    _pending_advice(message)))
    return out


def image_problems(registry: dict, tags: dict) -> list[Problem]:
    """Aliases on versions whose app image <env>-<version> is not in the cluster registry."""
    if "error" in registry or "error" in tags:
        return []
    out = []
    for env in ("staging", "canary", "production"):
        version = registry["aliases"].get(env)
        if version and f"{env}-{version}" not in tags["tags"]:
            out.append(Problem(
                f"alias {env} points at version {version}, but the registry has no image "
                f"gourmetgram-app:{env}-{version}; the next restart of that pod fails",
                (f"rebuild it: argo submit -n argo --from workflowtemplate/build-container-image "
                 f"-p version={version}" if env == "staging" else
                 f"roll {env} back (argo submit -n argo --from workflowtemplate/rollback -p "
                 f"environment={env}), or promote again from "
                 f"{'staging' if env == 'canary' else 'canary'}")))
    return out


def progress(facts: dict) -> list[str]:
    """One line per notebook that has something to show: done, started or not started."""
    cluster, registry, lease = facts["cluster"], facts["mlflow"], facts["lease"]
    lines = []
    if "error" not in lease:
        lines.append(f"notebook 1 done: lease {lease.get('name')} is {lease.get('status')} "
                     f"until {lease.get('end')}")
    nodes = cluster["nodes"]
    if isinstance(nodes, list) and nodes:
        ready = sum(n["ready"] for n in nodes)
        state = "done" if ready == len(nodes) >= FIRST_NOTEBOOK_FIVE_NODES else "started"
        lines.append(f"notebook 5 {state}: {ready} of {len(nodes)} nodes Ready")
    else:
        lines.append("notebook 5 not done: kubectl reaches no cluster")
        return lines
    apps = cluster["applications"] if isinstance(cluster["applications"], list) else []
    green = [a for a in apps if a["sync"] == "Synced" and a["health"] == "Healthy"]
    production = registry.get("aliases", {}).get("production") if "error" not in registry \
        else None
    if len(green) == 4 and production:
        lines.append("notebook 6 done: the platform is synced (4 Argo CD applications Synced "
                     f"and Healthy) and production serves version {production}")
    else:
        lines.append(f"notebook 6 {'started' if apps else 'not started'}: {len(green)} of 4 "
                     "Argo CD applications Synced and Healthy"
                     f"{'' if production else ', nothing in production yet'}")
        return lines
    versions = registry.get("versions", [])
    first = versions[0]["version"] if versions else None
    later = [v for v in versions if v["version"] != first]
    approved = [v for v in later if v["approved"]]
    if approved:
        lines.append(f"notebook 7 done: version {approved[0]['version']} "
                     f"({approved[0]['scenario']}) passed staging and is approved")
    else:
        lines.append("notebook 7 " + ("started: a new version, not approved yet" if later
                                      else "not started"))
        return lines
    flows = cluster["workflows"] if isinstance(cluster["workflows"], list) else []
    promoted = [w for w in flows if w["template"] == "promote-model"
                and w["parameters"].get("version") != first]
    rollbacks = [w for w in flows if w["template"] == "rollback"
                 and w["parameters"].get("environment") == "production"
                 and w["phase"] == "Succeeded"]
    scenarios = {v["scenario"] for v in later}
    if rollbacks and {"slow", "bad-architecture", "oversized"} <= scenarios:
        lines.append("notebook 8 done: the three broken models met their gates and "
                     "production was rolled back")
    else:
        lines.append("notebook 8 " + ("started" if promoted else "not started"))
    return lines


def diagnose(facts: dict, now: datetime, expect_cluster: bool = True
             ) -> tuple[list[str], list[Problem]]:
    """Where the student is, and every problem found, each with its next step."""
    cluster, registry = facts["cluster"], facts["mlflow"]
    problems = lease_problems(facts["lease"], now)
    if isinstance(cluster["nodes"], dict):
        if expect_cluster:
            problems.append(Problem(f"kubectl cannot read the cluster: "
                                    f"{cluster['nodes']['error']}",
                                    "source env.sh (it sets KUBECONFIG), or finish notebook 5"))
        return progress(facts), problems
    problems += node_problems(cluster["nodes"])
    apps = cluster["applications"] if isinstance(cluster["applications"], list) else []
    problems += application_problems(apps)
    if isinstance(cluster["workflows"], list):
        problems += workflow_problems(cluster["workflows"], now)
    platform_exists = any(a["name"] == "gourmetgram-platform" for a in apps)
    if "error" in registry and platform_exists:
        problems.append(Problem(
            f"MLflow is not answering: {registry['error']}",
            "kubectl -n gourmetgram-platform get pods (mlflow and postgres must be Running); "
            "then the gourmetgram-platform application in Argo CD"))
    problems += image_problems(registry, cluster["registry_tags"])
    return progress(facts), problems


def render(lines: list[str], problems: list[Problem], quiet: bool = False) -> str:
    """The doctor's answer as text; quiet keeps only the problems (empty when there are none)."""
    out = [] if quiet else ["Where you are:", *(f"  {line}" for line in lines), ""]
    if problems:
        out += [f"Problems ({len(problems)}):", *(str(p) for p in problems)]
    elif not quiet:
        out.append("No problems found.")
    return "\n".join(out) + "\n" if out else ""
