"""tools/screenshots.py's steps: a failed step names itself, and nothing it started survives."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from tools import screenshots


def alive(pid: int) -> bool:
    """True while a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_failed_step_names_itself_its_exit_code_and_its_log(tmp_path: Path) -> None:
    log = tmp_path / "step.log"
    code = "print('line one'); print('the reason it failed'); raise SystemExit(3)"
    with pytest.raises(screenshots.StepFailed) as err:
        screenshots.run_step("training", [sys.executable, "-c", code], log)
    message = str(err.value)
    assert message.startswith("training exited with 3")
    assert "the reason it failed" in message and str(log) in message


def test_a_step_that_runs_too_long_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    start = time.monotonic()
    with pytest.raises(screenshots.StepFailed, match="did not finish within 3 s"):
        screenshots.run_step("slow", [sys.executable, "-c", code], tmp_path / "slow.log",
                             timeout=3)
    assert time.monotonic() - start < 20
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child), "the step's child process survived"


def test_a_successful_step_passes_its_environment(tmp_path: Path) -> None:
    log = tmp_path / "ok.log"
    code = "import os; print(os.environ['SHOTS_TEST'])"
    screenshots.run_step("ok", [sys.executable, "-c", code], log, env={"SHOTS_TEST": "seen"})
    assert log.read_text().strip() == "seen"


def test_a_server_is_stopped_when_the_block_fails() -> None:
    events = []
    with pytest.raises(ValueError), screenshots.started(
            "server", lambda: events.append("start"), lambda: events.append("stop")):
        raise ValueError("a later step failed")
    assert events == ["start", "stop"]


def test_a_server_that_cannot_start_is_a_failed_step() -> None:
    def start() -> None:
        raise RuntimeError("port in use")

    stopped = []
    with pytest.raises(screenshots.StepFailed, match="MLflow did not start: port in use"), \
            screenshots.started("MLflow", start, lambda: stopped.append(True)):
        pass
    assert stopped == []


def test_a_missing_sample_set_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(screenshots.StepFailed, match="make sample-data"):
        screenshots.sample_photos(tmp_path)
