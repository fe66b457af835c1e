"""Reference screenshots for the book, taken from a real local run: `make screenshots`.

    python tools/screenshots.py [--data-dir data/food11-sample] [--out book/images/reference]

It starts a lean MLflow server, trains on the synthetic sample set with train/flow.py (which
registers the model as @development), downloads that version with train/ops.py, serves it
with the real app under gunicorn, scrapes the app with Debian's Prometheus, and photographs
the pages with headless Debian Chromium (driven by Playwright). Every process it starts is
stopped again, also when a step fails; a failed step exits 1 with its name and its log.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for _path in (REPO, REPO / "train"):  # run as a script: the repository and train/ importable
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import canary  # noqa: E402
import config  # noqa: E402
from live_users import play  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from app.localserver import LocalServer  # noqa: E402
from tests.mlflow_server import MlflowServer  # noqa: E402
from tests.prometheus_server import PrometheusServer, loopback_config, pod_target  # noqa: E402

OUT = REPO / "book" / "images" / "reference"
DATA = REPO / "data" / "food11-sample"
WINDOW = {"width": 1280, "height": 800}
FAILED = REPO / "build" / "screenshots-failed"
MAX_BYTES = 300_000
CHROMIUM = "/usr/bin/chromium"
# Flags that keep Chromium off the network and working as root in a container (Playwright
# adds --headless and a temporary --user-data-dir of its own); tests/test_book.py uses them too.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SAMPLE_PHOTO = REPO / "app" / "samples" / "Noodles-Pasta.jpg"
GATE_WINDOW = "1m"  # the lab's gate uses 10m; this run has about a minute of traffic
TRAFFIC_S = 60.0
STEP_TIMEOUT_S = 900.0
PAGE_TIMEOUT_MS = 60_000


class StepFailed(RuntimeError):
    """One step of the run failed; the message names it and shows its log."""


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that there is none."""
    if not path.is_file():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_step(name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None,
             timeout: float = STEP_TIMEOUT_S) -> None:
    """Run cmd in its own process group with its output in log; StepFailed if it fails."""
    print(f"[screenshots] {name} ...", flush=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        if proc.poll() is None:  # timed out or interrupted: take its children with it
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if code != 0:
        why = f"did not finish within {timeout:g} s" if code is None else f"exited with {code}"
        raise StepFailed(f"{name} {why}; the end of its log ({log}):\n{tail(log)}")


@contextmanager
def started(name: str, start: Callable[[], object], stop: Callable[[], object]) -> Iterator:
    """Start a server for the with-block and always stop it; StepFailed if it cannot start."""
    print(f"[screenshots] starting {name} ...", flush=True)
    try:
        server = start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        raise StepFailed(f"{name} did not start: {err}") from None
    try:
        yield server
    finally:
        stop()


@dataclass(frozen=True)
class Trained:
    """Where the registered version lives in MLflow."""

    version: str
    run_id: str
    experiment_id: str


def train(uri: str, data_dir: Path, work: Path) -> Trained:
    """Run the real pipeline (train/flow.py normal) against the server; return its version."""
    version_file = work / "model_version"
    run_step("training (train/flow.py normal)",
             [sys.executable, str(REPO / "train" / "flow.py"), "normal", "--weights", "none",
              "--version-file", str(version_file)],
             work / "train.log",
             env={"MLFLOW_TRACKING_URI": uri, "FOOD11_DATA_DIR": str(data_dir)})
    version = version_file.read_text().strip() if version_file.is_file() else ""
    if not version:
        raise StepFailed(f"training registered no version (evaluation failed?):\n"
                         f"{tail(work / 'train.log')}")
    client = MlflowClient(tracking_uri=uri)
    try:
        registered = client.get_model_version_by_alias(config.MODEL_NAME, config.DEV_ALIAS)
    except MlflowException as err:
        raise StepFailed(f"no @{config.DEV_ALIAS} version after training: {err}") from None
    if registered.version != version:
        raise StepFailed(f"@{config.DEV_ALIAS} is version {registered.version}, not {version}")
    run = client.get_run(registered.run_id)
    return Trained(version, run.info.run_id, run.info.experiment_id)


def download(uri: str, work: Path) -> Path:
    """Fetch the @development version for serving (train/ops.py download); return its folder."""
    out = work / "serve"
    run_step(f"download of @{config.DEV_ALIAS} (train/ops.py download)",
             [sys.executable, str(REPO / "train" / "ops.py"), "download",
              "--alias", config.DEV_ALIAS, "--out", str(out)],
             work / "download.log", env={"MLFLOW_TRACKING_URI": uri})
    return out


def traffic(url: str, photos: list[tuple[str, bytes]]) -> threading.Thread:
    """Send photos to the app in the background for TRAFFIC_S seconds, at 4 per second."""
    thread = threading.Thread(target=play, args=(url, photos, 4.0, TRAFFIC_S, 1), daemon=True)
    thread.start()
    return thread


def gate_query(version: str) -> str:
    """The canary gate's request-count query for production (train/canary.py)."""
    return canary.queries(version, GATE_WINDOW)["production:requests"]


def save(page, path: Path) -> int:
    """Screenshot the viewport into path; return its size, refusing one above MAX_BYTES."""
    page.wait_for_timeout(1500)  # let charts finish their animations
    page.screenshot(path=str(path), full_page=False)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise StepFailed(f"{path.name} is {size} bytes, more than {MAX_BYTES}")
    print(f"[screenshots] wrote {path} ({size // 1024} KB)", flush=True)
    return size


# The MLflow UI keeps its view in localStorage: the model-training menus, and the assistant
# panel closed (it opens by itself on a first visit and would hide a third of the page).
MLFLOW_UI_STATE = """
localStorage.setItem('mlflow.workflowType_v1', '"machine_learning"');
localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
"""


def shoot(context, name: str, action: Callable, out: Path) -> int:
    """Open a new page, run its action, screenshot it; StepFailed naming the page on error."""
    from playwright.sync_api import Error as PlaywrightError

    print(f"[screenshots] {name} ...", flush=True)
    page = context.new_page()  # a new document each time, so the init script applies
    try:
        action(page)
        return save(page, out / name)
    except PlaywrightError as err:
        FAILED.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(FAILED / name))
        raise StepFailed(f"{name}: {err}\n(what the page showed: {FAILED / name})") from None
    finally:
        page.close()


def capture(out: Path, mlflow_url: str, trained: Trained, app_url: str, prometheus_url: str,
            traffic_done: Callable[[], None]) -> dict[str, int]:
    """Photograph the pages into out (Prometheus once traffic_done returns); return sizes."""
    from playwright.sync_api import sync_playwright

    run = f"{mlflow_url}/#/experiments/{trained.experiment_id}/runs/{trained.run_id}"
    query = urllib.parse.urlencode({"g0.expr": gate_query(trained.version), "g0.tab": "0",
                                    "g0.range_input": "2m"})

    def run_overview(page) -> None:
        page.goto(run)
        metric = page.get_by_text("tests_passed").first
        metric.wait_for()
        metric.scroll_into_view_if_needed()

    def run_charts(page) -> None:
        page.goto(f"{run}/model-metrics")
        page.get_by_placeholder("Search metric charts").fill("accuracy")
        page.get_by_text("val_accuracy").first.wait_for()

    def confusion(page) -> None:
        page.goto(f"{run}/artifacts/evaluation/confusion_matrix.png")
        page.get_by_text("evaluation/confusion_matrix.png").first.wait_for()
        page.wait_for_function(  # the preview is a blob: image; wait until it has decoded
            "[...document.images].some(i => i.complete && i.naturalWidth > 300)")

    def versions(page) -> None:
        page.goto(f"{mlflow_url}/#/models/{config.MODEL_NAME}")
        page.get_by_text(config.DEV_ALIAS).first.wait_for()

    def prediction(page) -> None:
        page.goto(app_url)
        page.set_input_files("#file", str(SAMPLE_PHOTO))
        page.click("button[type=submit]")
        page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('Prediction:')")

    def prometheus(page) -> None:
        traffic_done()
        time.sleep(3)  # two more scrapes after the last request
        page.goto(f"{prometheus_url}/graph?{query}")
        page.get_by_text('{environment="production"}').first.wait_for()  # the legend

    sizes: dict[str, int] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=WINDOW)
            context.set_default_timeout(PAGE_TIMEOUT_MS)
            context.add_init_script(MLFLOW_UI_STATE)
            for name, action in (("mlflow-run-overview.png", run_overview),
                                 ("mlflow-run-metrics.png", run_charts),
                                 ("mlflow-confusion-matrix.png", confusion),
                                 ("mlflow-model-versions.png", versions),
                                 ("gourmetgram-prediction.png", prediction)):
                sizes[name] = shoot(context, name, action, out)
        finally:
            browser.close()
    return sizes


def sample_photos(data_dir: Path) -> list[tuple[str, bytes]]:
    """The validation photos of the sample set, for the background traffic."""
    photos = [(p.name, p.read_bytes()) for p in sorted((data_dir / "validation").rglob("*.jpg"))]
    if not photos:
        raise StepFailed(f"no sample set at {data_dir}: run `make sample-data` first")
    return photos


def main(argv: list[str] | None = None) -> int:
    """Run everything, write the PNGs, and stop every process on the way out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA, help=f"default {DATA}")
    parser.add_argument("--out", type=Path, default=OUT, help=f"default {OUT}")
    args = parser.parse_args(argv)
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so the servers below are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    start = time.monotonic()
    try:
        photos = sample_photos(args.data_dir)
        with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp, ExitStack() as stack:
            work = Path(tmp)
            mlflow = MlflowServer(work / "mlflow")
            stack.enter_context(started("MLflow", mlflow.start, mlflow.stop))
            trained = train(mlflow.uri, args.data_dir, work)
            serve = download(mlflow.uri, work)
            app = LocalServer(serve / "model.onnx", serve / "versions.txt", work / "app.log",
                              WORKERS="1")
            stack.enter_context(started("the app (gunicorn)", app.start, app.stop))
            targets = work / "targets.json"
            targets.write_text(json.dumps([pod_target(
                f"127.0.0.1:{app.port}", "production", f"production-{trained.version}",
                "gourmetgram-app-production")]))
            prom = PrometheusServer(work / "prometheus", loopback_config(targets))
            stack.enter_context(started("Prometheus", prom.start, prom.stop))
            load = traffic(app.url, photos)
            args.out.mkdir(parents=True, exist_ok=True)
            # The MLflow pages first, while the traffic builds up a minute of samples.
            sizes = capture(args.out, mlflow.uri, trained, app.url, prom.url, load.join)
    except StepFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    total = time.monotonic() - start
    print(f"[screenshots] {len(sizes)} images in {args.out} in {total:.0f} s: "
          + ", ".join(f"{n} {s // 1024} KB" for n, s in sizes.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
