"""Serving benchmark: the app under gunicorn on loopback, against its compute bound.

    make bench-serve            # or: python -m app.bench [--model build/serve/model.pth]

The bound is what the CPUs could do if serving cost nothing but the model's own work:
cores / (time for one request's compute on one thread). The per-request compute is measured
here with the app's own code (decode + preprocessing + forward pass); the forward pass alone
is printed too. Without --model, an untrained normal model is built: the forward time does
not depend on the weights.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from app.client import LoadResult, run_load
from app.config import cpu_count, load_config, sample_file
from app.food11 import CLASS_NAMES, IMAGE_SIZE
from app.images import decode_image
from app.localserver import LocalServer
from app.predictor import Predictor

TARGET_RATIO = 0.9
OTHER_WORK_WARNING = 0.2  # cores used by other processes that spoil a run


def untrained_model(out_dir: Path) -> Path:
    """Save an untrained normal model (train/model.py) for serving; return its path."""
    try:
        from model import build_model, save_for_serving  # train/ must be on PYTHONPATH
    except ImportError as err:
        raise SystemExit(f"cannot import train/model.py ({err}); run `make bench-serve`") from err
    return save_for_serving(build_model("normal"), out_dir, "bench-untrained")


def time_per_request(model_path: Path, image: bytes, repeats: int) -> tuple[float, float]:
    """Mean seconds, on one torch thread, of (decode + preprocess + forward, forward only).

    A throughput bound needs the mean cost, not the median. The best of three rounds is
    kept, so that a burst of other work on the machine does not loosen the bound.
    """
    torch.set_num_threads(1)
    predictor = Predictor(model_path)
    pixels = load_config().max_image_pixels
    batch = predictor.transform(decode_image(image, pixels)).unsqueeze(0)

    def mean_time(step) -> float:
        for _ in range(10):
            step()
        rounds = []
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(repeats):
                step()
            rounds.append((time.perf_counter() - start) / repeats)
        return min(rounds)

    with torch.inference_mode():
        forward = mean_time(lambda: predictor.model(batch))
    full = mean_time(lambda: predictor.predict(decode_image(image, pixels)))
    return full, forward


def _pid_fields(pid: str) -> list[str]:
    """The fields of /proc/PID/stat after "pid (name)": state, ppid, ..., utime (11), stime."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


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
    what serving costs beyond the model's compute (HTTP, Flask, metrics, cold caches).
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Benchmark the serving app under gunicorn.")
    parser.add_argument("--model", type=Path, help="model.pth to serve (default: untrained)")
    parser.add_argument("--requests", type=int, default=600, help="requests per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time cap per run")
    parser.add_argument("--repeats", type=int, default=200,
                        help="single-image passes per timing round (three rounds)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the report; non-zero exit if any request failed."""
    args = parse_args(argv)
    image = sample_file(CLASS_NAMES[0]).read_bytes()
    with tempfile.TemporaryDirectory(prefix="gourmetgram-bench-") as tmp:
        tmp_dir = Path(tmp)
        if args.model:
            model_path, source = args.model, f"the model in {args.model}"
        else:
            model_path = untrained_model(tmp_dir)
            source = "an untrained normal model (train/model.py; weights do not change the cost)"
        versions = model_path.parent / "versions.txt"
        cores, workers = cpu_count(), load_config().workers
        full, forward = time_per_request(model_path, image, args.repeats)
        bound = min(cores, workers) / full
        print(f"model: {source}, input {IMAGE_SIZE}x{IMAGE_SIZE}")
        print(f"CPUs: {cores}, gunicorn workers: {workers}, torch threads per worker: 1")
        print(f"one request's compute, 1 thread: {1000 * full:.2f} ms "
              f"(decode + preprocessing + forward; forward alone {1000 * forward:.2f} ms)")
        print(f"compute bound: {bound:.1f} req/s (forward-only bound "
              f"{min(cores, workers) / forward:.1f} req/s)")

        results = {}
        with LocalServer(model_path, versions, tmp_dir / "gunicorn.log") as server:
            run_load(server.url, image, 40, max(args.concurrency))  # warm both workers up
            for concurrency in args.concurrency:
                before = cpu_snapshot(server.proc.pid)
                result = run_load(server.url, image, args.requests, concurrency, args.max_seconds)
                usage, others = cpu_report(before, cpu_snapshot(server.proc.pid), result,
                                           min(cores, workers), bound)
                results[concurrency] = result
                print(f"concurrency {concurrency}: {result.summary()}, "
                      f"{result.throughput / bound:.2f} of the bound\n    {usage}")
                if others > OTHER_WORK_WARNING:
                    print(f"    WARNING: other processes kept {others:.2f} cores busy; "
                          "this run understates the app. Re-run on a quiet machine.")
    top = results[max(results)]
    ratio = top.throughput / bound
    errors = sum(len(r.errors) for r in results.values())
    verdict = "MET" if ratio >= TARGET_RATIO and errors == 0 else "NOT MET"
    print(f"target (>= {TARGET_RATIO} of the bound at concurrency {top.concurrency}, no errors): "
          f"{verdict} ({ratio:.2f}, {errors} errors)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
