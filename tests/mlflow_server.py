"""Start and stop a real MLflow tracking server on loopback for tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.localserver import free_port
from tests.ready import wait_ready


class MlflowServer:
    """A lean `mlflow server` (SQLite + local artifacts) in a temporary folder."""

    def __init__(self, root: Path, port: int | None = None, app_name: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        # e.g. "basic-auth" with its settings in env (MLFLOW_AUTH_CONFIG_PATH, ...).
        self.app_name = app_name
        self.env = env or {}

    def start(self, timeout: float = 60.0) -> MlflowServer:
        """Launch the server and wait until its health endpoint answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", **self.env)
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            *(["--app-name", self.app_name] if self.app_name else []),
        ]
        log = open(self.root / "server.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_ready(self.proc, f"{self.uri}/health", timeout, "mlflow server",
                       lambda: (self.root / "server.log").read_text(errors="replace"))
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the server process."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
