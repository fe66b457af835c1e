"""gunicorn settings for the app, derived from app/config.py (environment variables).

Serving a CNN on the CPU is compute-bound, so the sync worker is the right model: one
request at a time per process, one process per core, and one ONNX Runtime intra-op thread
per process (MODEL_THREADS; the app's Predictor sets it). More threads than cores make the
workers fight over the CPUs (measured with PyTorch on 2 cores: about 60 requests/s with one
thread per worker, about 7 with two).
"""

import os
import shutil
import tempfile
from pathlib import Path

from app.config import load_config

_config = load_config()

bind = f"0.0.0.0:{_config.port}"  # `make serve` overrides this with --bind 127.0.0.1:PORT
workers = _config.workers
worker_class = "sync"
# Loading and warming up the model happens before a worker's first heartbeat.
timeout = _config.timeout_s
graceful_timeout = 30
accesslog = "-"
errorlog = "-"
# gunicorn's control socket (for `gunicornc`) lives under $HOME, which the image's user lacks;
# the app needs none of it.
control_socket_disable = True

# Heartbeat and metric files belong in memory, not on a container's overlay disk.
_SHM = Path("/dev/shm")
_IN_MEMORY = str(_SHM) if _SHM.is_dir() and os.access(_SHM, os.W_OK) else None
worker_tmp_dir = _IN_MEMORY

# Every worker must see the same metrics folder, so it is set here, in the master, before
# any worker is forked (prometheus_client reads it when first imported).
_OWN_METRICS_DIR = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _OWN_METRICS_DIR = tempfile.mkdtemp(prefix="gourmetgram-metrics-", dir=_IN_MEMORY)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _OWN_METRICS_DIR


def on_starting(server) -> None:
    """Clear metric files left by an earlier run that used the same folder."""
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()
    server.log.info(
        "%d worker(s), %d model thread(s) each, metrics in %s",
        workers, _config.threads, os.environ["PROMETHEUS_MULTIPROC_DIR"],
    )


def child_exit(server, worker) -> None:
    """Drop a finished worker's live gauges from the summed metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the metrics folder if this configuration created it."""
    if _OWN_METRICS_DIR:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)
