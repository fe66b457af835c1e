"""Run the app under real gunicorn on loopback, for the tests and the benchmark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from app.client import Client, wait_ready
from app.config import APP_DIR

REPO = APP_DIR.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """`gunicorn --config app/gunicorn.conf.py app.server:app` on 127.0.0.1 and a free port.

    wsgi_app names another app module (the benchmark's PyTorch reference).
    """

    def __init__(self, model_path: Path, versions_file: Path, log_path: Path,
                 wsgi_app: str = "app.server:app", **env: str) -> None:
        self.wsgi_app = wsgi_app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.env = dict(
            os.environ, PYTHONPATH=pythonpath, MODEL_PATH=str(model_path),
            VERSIONS_FILE=str(versions_file), PORT=str(self.port), **env,
        )
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # gunicorn.conf.py makes a fresh one
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> LocalServer:
        """Start gunicorn and wait until /readyz answers 200; stop it and raise on failure."""
        cmd = [sys.executable, "-m", "gunicorn", "--config", str(APP_DIR / "gunicorn.conf.py"),
               "--bind", f"127.0.0.1:{self.port}", self.wsgi_app]
        with open(self.log_path, "wb") as log:
            # Its own session, so that a hung master and its workers can be killed together.
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        client = Client(self.url, timeout=5)
        try:
            wait_ready(client, timeout, interval=0.25, check=self._still_running)
            return self
        except BaseException as err:
            self.stop()
            if isinstance(err, TimeoutError):
                raise RuntimeError(f"the app was not ready within {timeout:g} s ({err}):\n"
                                   f"{self.log()}") from None
            raise
        finally:
            client.close()

    def _still_running(self) -> None:
        """Raise RuntimeError, with the log, if gunicorn has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()}")

    def log(self) -> str:
        """What gunicorn and the app printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        """Stop gunicorn gracefully (SIGTERM), killing it if it hangs; return its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
