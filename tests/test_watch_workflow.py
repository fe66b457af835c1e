"""tools/watch_workflow.py: what a student reads while a workflow runs, and its exit status."""

from __future__ import annotations

from tools import watch_workflow as ww

T0 = 1_780_000_000.0  # a fixed start, in seconds


def stamp(offset: float) -> str:
    """An Argo timestamp offset seconds after T0."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(T0 + offset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def workflow(phase: str, pods: dict[str, tuple[str, float]], message: str = "") -> dict:
    """A Workflow object shaped as Argo writes its status: nodes keyed by id."""
    nodes = {"wf": {"displayName": "wf", "type": "Steps", "phase": phase}}
    for i, (name, (pod_phase, offset)) in enumerate(pods.items()):
        nodes[f"wf-{i}"] = {"displayName": name, "type": "Pod", "phase": pod_phase,
                            "startedAt": stamp(offset),
                            **({"message": message} if pod_phase == "Failed" else {})}
    return {"status": {"phase": phase, "nodes": nodes, "message": message}}


def run(states: list[dict | None], timeout: float = 3600, every: float = 120, poll: float = 10):
    """Feed the states one per poll to watch(); return its status and what it said."""
    clock = {"t": T0}
    said: list[str] = []
    feed = iter(states)
    last = {"wf": None}

    def get() -> dict | None:
        last["wf"] = next(feed, last["wf"])
        return last["wf"]

    def sleep(s: float) -> None:
        clock["t"] += s

    status = ww.watch("demo", get, timeout, every, poll=poll, now=lambda: clock["t"],
                      sleep=sleep, say=said.append)
    return status, said


def test_a_line_when_the_step_changes_and_the_outcome_at_the_end() -> None:
    clone = workflow("Running", {"clone": ("Running", 0)})
    build = workflow("Running", {"clone": ("Succeeded", 0), "build": ("Running", 20)})
    done = workflow("Succeeded", {"clone": ("Succeeded", 0), "build": ("Succeeded", 20)})
    status, said = run([clone, clone, build, build, build, done])
    assert status == 0
    assert said[0] == "  0m00s  Running: running clone (0m00s)"
    assert said[1] == "  0m20s  Running: running build (0m00s)"
    assert said[-1] == "  0m50s  demo Succeeded"
    assert len(said) == 3  # an unchanged step is not repeated within `every`


def test_an_unchanged_step_is_repeated_every_so_often_with_its_time() -> None:
    build = workflow("Running", {"build": ("Running", 0)})
    status, said = run([build] * 40 + [workflow("Succeeded", {})], every=120)
    assert status == 0
    assert [line.split()[0] for line in said[:-1]] == ["0m00s", "2m00s", "4m00s", "6m00s"]
    assert said[2].endswith("running build (4m00s)")


def test_a_failure_names_the_failed_step_and_its_message() -> None:
    failed = workflow("Failed", {"train": ("Failed", 0)}, message="exit code 1")
    status, said = run([workflow("Running", {"train": ("Running", 0)}), failed])
    assert status == 1
    assert "demo Failed" in said[-3]
    assert said[-2].strip() == "failed step train: exit code 1"
    assert "argo logs -n argo demo" in said[-1]


def test_the_timeout_says_the_run_goes_on_in_the_cluster() -> None:
    status, said = run([workflow("Running", {"build": ("Running", 0)})], timeout=60)
    assert status == 2
    assert "after the 1m00s this wait allows" in said[-1]
    assert "argo get -n argo demo" in said[-1]


def test_a_workflow_not_created_yet_is_waited_for() -> None:
    status, said = run([None, None, workflow("Succeeded", {})])
    assert status == 0
    assert said[0].endswith("not created yet")


def test_durations_parse_and_print() -> None:
    assert ww.seconds("45m") == 2700 and ww.seconds("1h") == 3600 and ww.seconds("90") == 90
    assert ww.clock(65) == "1m05s" and ww.clock(3720) == "1h02m"
