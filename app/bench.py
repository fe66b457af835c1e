"""Serving benchmark: this app, a PyTorch-eager reference and the compute bound, side by side.

    make bench-serve            # or: python -m app.bench [--model build/serve/model.onnx]

For each input size (the shipped model's, and 224 px) it serves, under gunicorn on loopback,
(a) this app (ONNX Runtime) and (b) the previous design, PyTorch eager on the same decoding
and preprocessing (app/eager_reference.py), at each concurrency, with 512x384 JPEG uploads.
The bound is cores / the mean single-thread ONNX Runtime forward pass: what the CPUs could
serve if everything but the model cost nothing. It prints requests/s, p50/p95, errors, the
RSS of each worker, and the installed size of the app's requirements. Figures are printed,
never asserted: other work on the machine changes them. Models are untrained (the cost of a
forward pass does not depend on the weights) unless --model names the shipped one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from app.client import LoadResult, run_load
from app.config import APP_DIR, cpu_count, load_config, sample_file
from app.food11 import CLASS_NAMES, IMAGE_SIZE
from app.localserver import LocalServer
from app.predictor import Predictor

OTHER_WORK_WARNING = 0.2  # cores used by other processes that spoil a run
# Targets at the highest concurrency (issue 12): ratios to the bound, speed-up over eager.
TARGET_224_BOUND, TARGET_224_EAGER, TARGET_SMALL_BOUND, TARGET_RSS_MB = 0.85, 3.0, 0.7, 300
SERVERS = {"onnx app": "app.server:app", "eager ref": "app.eager_reference:app"}


@dataclass
class Row:
    """One measured configuration."""

    size: int
    server: str
    result: LoadResult
    rss_mb: list[float]
    server_cpu_ms: float
    other_cores: float


def upload_image(width: int = 512, height: int = 384) -> bytes:
    """A 512x384 JPEG: a bundled sample photo enlarged, with fine texture (photo-like bytes)."""
    base = Image.open(sample_file(CLASS_NAMES[0])).convert("RGB")
    big = np.asarray(base.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    noise = np.random.default_rng(0).integers(-12, 13, big.shape, dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def untrained_models(out_dir: Path, size: int) -> Path:
    """model.onnx + model.pth of an untrained normal model at size; return the ONNX path."""
    try:
        from model import build_model, save_for_serving  # train/ must be on PYTHONPATH
    except ImportError as err:
        raise SystemExit(f"cannot import train/model.py ({err}); run `make bench-serve`") from err
    return save_for_serving(build_model("normal", image_size=size), out_dir, "bench")


def forward_ms(model_path: Path, repeats: int) -> float:
    """Mean ms of one single-thread ONNX Runtime forward pass (best of three rounds)."""
    predictor = Predictor(model_path, threads=1)
    size = predictor.input_size
    batch = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    for _ in range(10):
        predictor.run(batch)
    rounds = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            predictor.run(batch)
        rounds.append((time.perf_counter() - start) / repeats)
    return 1000 * min(rounds)


def _pid_fields(pid: str) -> list[str]:
    """The fields of /proc/PID/stat after "pid (name)": state, ppid, ..., utime (11), stime."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def workers_of(server_pid: int) -> list[int]:
    """The pids of gunicorn's worker processes (children of the master)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(_pid_fields(entry.name)[1]) == server_pid:
                    pids.append(int(entry.name))
    return pids


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (VmRSS)."""
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) / 1024 if match else float("nan")


def cpu_snapshot(server_pid: int) -> tuple[float, float, float]:
    """CPU seconds used so far by (gunicorn and its workers, this process, the whole machine)."""
    ticks = os.sysconf("SC_CLK_TCK")
    server = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):  # a process that ended
            fields = _pid_fields(entry.name)
            if int(entry.name) == server_pid or int(fields[1]) == server_pid:
                server += int(fields[11]) + int(fields[12])  # utime + stime
    # The first line of /proc/stat: cpu user nice system idle iowait irq softirq steal ...
    cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(cpu[0:3]) + sum(cpu[5:8])  # all but idle and iowait
    return server / ticks, time.process_time(), busy / ticks


def cpu_report(before: tuple[float, float, float], after: tuple[float, float, float],
               result: LoadResult, cores: int, bound: float) -> tuple[str, float]:
    """Cores kept busy by the server, the load client and everything else; server CPU/request.

    The second line is the most the cores allow at the server's own CPU cost per request:
    when throughput is close to it, the server is saturated and the gap to the bound is
    what serving costs beyond the model's compute (HTTP, Flask, decoding, preprocessing).
    Returns the report and the cores that other processes used.
    """
    server, client, machine = (b - a for a, b in zip(before, after, strict=True))
    other = max(0.0, machine - server - client)
    seconds, done = result.elapsed_s, max(1, result.completed + len(result.errors))
    per_request = server / done
    ceiling = cores / per_request if per_request else float("inf")
    text = (f"cores busy: server {server / seconds:.2f}, load client {client / seconds:.2f}, "
            f"other processes {other / seconds:.2f}; "
            f"server CPU per request {1000 * per_request:.2f} ms\n"
            f"    at that cost {cores} cores serve at most {ceiling:.1f} req/s "
            f"({ceiling / bound:.2f} of the bound)")
    return text, other / seconds


def installed_mb(requirements: Path) -> tuple[float, list[str]]:
    """Installed size (MB) of the distributions a requirements file pins, with their deps."""
    wanted = [re.split(r"[=<>\[; ]", ln.strip())[0] for ln in requirements.read_text().splitlines()
              if ln.strip() and not ln.lstrip().startswith("#")]
    seen: dict[str, metadata.Distribution] = {}
    while wanted:
        name = wanted.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        for req in dist.requires or []:
            if "extra ==" not in req:
                wanted.append(re.split(r"[=<>!~\[; (]", req.strip())[0])
    total = 0
    for dist in seen.values():
        for file in dist.files or []:
            with contextlib.suppress(OSError):
                total += Path(dist.locate_file(file)).stat().st_size
    return total / 1e6, sorted(seen)


def measure(name: str, size: int, model: Path, image: bytes, args: argparse.Namespace,
            cores: int, bound: float, logs: Path) -> list[Row]:
    """Serve one server at one size and run the load at each concurrency."""
    served = model if name == "onnx app" else model.with_name("model.pth")
    rows = []
    log = logs / f"{name.replace(' ', '-')}-{size}.log"
    with LocalServer(served, model.with_name("versions.txt"), log, wsgi=SERVERS[name]) as server:
        run_load(server.url, image, 20, max(args.concurrency))  # warm every worker up
        for concurrency in args.concurrency:
            before = cpu_snapshot(server.proc.pid)
            result = run_load(server.url, image, args.requests, concurrency, args.max_seconds)
            usage, other = cpu_report(before, cpu_snapshot(server.proc.pid), result, cores,
                                      bound)
            server_cpu = 1000 * (cpu_snapshot(server.proc.pid)[0] - before[0]) / max(
                1, result.completed + len(result.errors))
            rss = [rss_mb(pid) for pid in workers_of(server.proc.pid)]
            rows.append(Row(size, name, result, rss, server_cpu, other))
            print(f"  {size} px, {name}, concurrency {concurrency}: {result.summary()}\n"
                  f"    {usage}", flush=True)
            if other > OTHER_WORK_WARNING:
                print(f"    WARNING: other processes kept {other:.2f} cores busy; this run "
                      "understates both servers. Re-run on a quiet machine.", flush=True)
    return rows


def table(rows: list[Row], bounds: dict[int, float]) -> str:
    """The results as a Markdown table (what app/README.md records)."""
    eager = {(r.size, r.result.concurrency): r.result.throughput
             for r in rows if r.server == "eager ref"}
    lines = ["| size | server | concurrency | req/s | p50 ms | p95 ms | errors | "
             "RSS/worker MB | of bound | vs eager |", "|" + "---|" * 10]
    for r in rows:
        res, ref = r.result, eager.get((r.size, r.result.concurrency))
        speedup = f"{res.throughput / ref:.2f}x" if ref and r.server != "eager ref" else ""
        lines.append(f"| {r.size} | {r.server} | {res.concurrency} | {res.throughput:.1f} | "
                     f"{res.ms(50):.1f} | {res.ms(95):.1f} | {len(res.errors)} | "
                     f"{max(r.rss_mb, default=float('nan')):.0f} | "
                     f"{res.throughput / bounds[r.size]:.2f} | {speedup} |")
    return "\n".join(lines)


def verdicts(rows: list[Row], bounds: dict[int, float], shipped: int) -> list[str]:
    """One MET / NOT MET line per target, at the highest concurrency."""
    top = max(r.result.concurrency for r in rows)
    pick = {(r.size, r.server): r for r in rows if r.result.concurrency == top}
    out = []

    def line(ok: bool, text: str) -> None:
        out.append(f"target {text}: {'MET' if ok else 'NOT MET'}")

    if (224, "onnx app") in pick:
        app, eager = pick[(224, "onnx app")], pick.get((224, "eager ref"))
        ratio = app.result.throughput / bounds[224]
        line(ratio >= TARGET_224_BOUND and not app.result.errors,
             f"224 px >= {TARGET_224_BOUND} of the bound, 0 errors ({ratio:.2f}, "
             f"{len(app.result.errors)} errors)")
        if eager:
            speedup = app.result.throughput / max(eager.result.throughput, 1e-9)
            line(speedup >= TARGET_224_EAGER,
                 f"224 px >= {TARGET_224_EAGER:g}x the eager reference ({speedup:.2f}x)")
    small = [s for s in bounds if s != 224] or [shipped]
    for size in small:
        if (size, "onnx app") in pick:
            ratio = pick[(size, "onnx app")].result.throughput / bounds[size]
            line(ratio >= TARGET_SMALL_BOUND,
                 f"{size} px >= {TARGET_SMALL_BOUND} of the bound ({ratio:.2f})")
    rss = max((max(r.rss_mb, default=0.0) for r in rows if r.server == "onnx app"), default=0.0)
    line(rss <= TARGET_RSS_MB, f"RSS <= {TARGET_RSS_MB} MB per worker ({rss:.0f} MB)")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Benchmark the serving app under gunicorn.")
    parser.add_argument("--model", type=Path, help="the shipped model.onnx (model.pth beside "
                        "it for the eager reference); default: untrained at 64 px")
    parser.add_argument("--sizes", type=int, nargs="+",
                        help="input sizes (default: the shipped model's and 224)")
    parser.add_argument("--requests", type=int, default=400, help="requests per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time cap per run")
    parser.add_argument("--repeats", type=int, default=100,
                        help="forward passes per timing round (three rounds)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the report; non-zero exit if any request failed."""
    args = parse_args(argv)
    image = upload_image()
    cores = min(cpu_count(), load_config().workers)
    with tempfile.TemporaryDirectory(prefix="gourmetgram-bench-") as tmp:
        tmp_dir = Path(tmp)
        shipped = Predictor(args.model).input_size if args.model else IMAGE_SIZE
        sizes = args.sizes or sorted({shipped, 224})
        print(f"CPUs: {cpu_count()}, gunicorn workers: {load_config().workers}, one model "
              f"thread per worker; uploads: 512x384 JPEG ({len(image)} bytes)")
        rows: list[Row] = []
        bounds: dict[int, float] = {}
        for size in sizes:
            if args.model and size == shipped:
                model = args.model
            else:
                model = untrained_models(tmp_dir / str(size), size)
            fwd = forward_ms(model, args.repeats)
            bounds[size] = cores * 1000 / fwd
            print(f"{size} px: single-thread ONNX Runtime forward {fwd:.2f} ms -> bound "
                  f"{bounds[size]:.1f} req/s on {cores} cores", flush=True)
            for name in SERVERS:
                rows += measure(name, size, model, image, args, cores, bounds[size], tmp_dir)
    size_mb, dists = installed_mb(APP_DIR / "requirements.txt")
    print("\n" + table(rows, bounds) + "\n")
    print(f"installed size of app/requirements.txt with dependencies: {size_mb:.0f} MB "
          f"({len(dists)} distributions; no torch)")
    with contextlib.suppress(metadata.PackageNotFoundError):
        torch_mb = sum(installed_mb_of(n) for n in ("torch", "torchvision"))
        print(f"torch + torchvision alone, as installed here: {torch_mb:.0f} MB")
    for text in verdicts(rows, bounds, shipped):
        print(text)
    if args.json:
        args.json.write_text(json.dumps({"bounds": bounds, "installed_mb": size_mb, "rows": [
            {"size": r.size, "server": r.server, "concurrency": r.result.concurrency,
             "req_s": r.result.throughput, "p50_ms": r.result.ms(50),
             "p95_ms": r.result.ms(95), "errors": len(r.result.errors), "rss_mb": r.rss_mb,
             "server_cpu_ms": r.server_cpu_ms, "other_cores": r.other_cores}
            for r in rows]}, indent=1))
    return 1 if any(r.result.errors for r in rows) else 0


def installed_mb_of(name: str) -> float:
    """Installed size (MB) of one distribution's own files."""
    dist = metadata.distribution(name)
    sizes = [Path(dist.locate_file(f)).stat().st_size for f in dist.files or []
             if Path(dist.locate_file(f)).is_file()]
    return sum(sizes) / 1e6


if __name__ == "__main__":
    sys.exit(main())
