"""Start and stop a real Prometheus (Debian's /usr/bin/prometheus) on loopback for tests."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from app.localserver import free_port
from tests.ready import wait_ready

REPO = Path(__file__).resolve().parent.parent
CHART_CONFIG = REPO / "k8s" / "platform" / "files" / "prometheus.yml"
BINARY = shutil.which("prometheus") or "/usr/bin/prometheus"


def pod_target(address: str, env: str, tag: str, pod: str) -> dict[str, Any]:
    """A file-discovery target carrying the labels Kubernetes pod discovery would set."""
    return {
        "targets": [address],
        "labels": {
            "__meta_kubernetes_namespace": f"gourmetgram-{env}",
            "__meta_kubernetes_pod_name": pod,
            "__meta_kubernetes_pod_phase": "Running",
            "__meta_kubernetes_pod_container_port_name": "http",
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": "gourmetgram-app",
            "__meta_kubernetes_pod_label_app_kubernetes_io_version": tag,
            "__meta_kubernetes_pod_label_gourmetgram_io_environment": env,
        },
    }


def loopback_config(targets_file: Path, interval: str = "1s") -> dict[str, Any]:
    """The chart's Prometheus config with pod discovery swapped for a targets file."""
    config = copy.deepcopy(yaml.safe_load(CHART_CONFIG.read_text()))
    config["global"]["scrape_interval"] = interval
    config["global"]["evaluation_interval"] = interval
    for job in config["scrape_configs"]:
        job.pop("kubernetes_sd_configs")
        job["file_sd_configs"] = [{"files": [str(targets_file)], "refresh_interval": "1s"}]
    return config


class PrometheusServer:
    """`prometheus` with a given config, its data in a temporary folder."""

    def __init__(self, root: Path, config: dict[str, Any]) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = config
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        """Write the config, check it with promtool, launch, and wait until it is ready."""
        if not Path(BINARY).is_file() or not shutil.which("promtool"):
            raise RuntimeError("prometheus and promtool are missing: make setup installs "
                               "Debian's prometheus package")
        self.root.mkdir(parents=True, exist_ok=True)
        config_file = self.root / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config))
        subprocess.run(["promtool", "check", "config", str(config_file)], check=True,
                       capture_output=True, text=True)
        log = open(self.root / "prometheus.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [BINARY, f"--config.file={config_file}", f"--storage.tsdb.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(self.proc, f"{self.url}/-/ready", timeout, "prometheus", self.log)
        except RuntimeError:
            self.stop()
            raise
        return self

    def log(self) -> str:
        """What Prometheus printed so far."""
        return (self.root / "prometheus.log").read_text(errors="replace")

    def api(self, path: str, **params: str) -> Any:
        """GET an API path and return its data field."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def active_targets(self) -> list[dict[str, Any]]:
        """The targets Prometheus scrapes now, with their labels and health."""
        return self.api("targets", state="active")["activeTargets"]

    def stop(self) -> None:
        """Terminate Prometheus."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
