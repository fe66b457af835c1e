"""Wait for a server process the tests started to answer on its health URL."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable


def wait_ready(proc: subprocess.Popen, url: str, timeout: float, name: str,
               log: Callable[[], str]) -> None:
    """Return once url answers 200; raise with the server's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{log()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer within {timeout}s:\n{log()}")
