"""The model fits the latency and storage budgets."""

import statistics
import time

import torch


def test_single_image_cpu_latency(model, cfg, metrics):
    """One image on one CPU thread, median of 15 runs, within EVAL_LATENCY_BUDGET_MS."""
    size = model.input_size
    image = torch.randn(1, 3, size, size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the app: one thread per gunicorn worker
    try:
        with torch.no_grad():
            for _ in range(3):  # warm-up
                model(image)
            times = []
            for _ in range(15):
                start = time.perf_counter()
                model(image)
                times.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(threads)
    latency = statistics.median(times)
    metrics["latency_ms"] = latency
    assert latency <= cfg.latency_budget_ms, (
        f"median latency {latency:.1f} ms > {cfg.latency_budget_ms} ms")


def test_model_file_within_storage_budget(model_path, cfg, metrics):
    """The saved model is no larger than EVAL_MAX_MODEL_BYTES (a registry budget)."""
    size = model_path.stat().st_size
    metrics["model_bytes"] = size
    assert size <= cfg.max_model_bytes, f"model file {size} bytes > {cfg.max_model_bytes}"
