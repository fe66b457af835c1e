"""The served model fits the latency and storage budgets."""

import statistics
import time

import numpy as np


def test_single_image_cpu_latency(model, input_size, cfg, metrics):
    """One image in ONNX Runtime on one thread, median of 15 runs, within the budget."""
    image = np.random.default_rng(0).standard_normal((1, 3, input_size, input_size))
    image = image.astype(np.float32)
    for _ in range(3):  # warm-up
        model(image)
    times = []
    for _ in range(15):
        start = time.perf_counter()
        model(image)
        times.append((time.perf_counter() - start) * 1000)
    latency = statistics.median(times)
    metrics["latency_ms"] = latency
    assert latency <= cfg.latency_budget_ms, (
        f"median latency {latency:.1f} ms > {cfg.latency_budget_ms} ms")


def test_model_file_within_storage_budget(model_path, cfg, metrics):
    """The served ONNX file is no larger than EVAL_MAX_MODEL_BYTES (a registry budget)."""
    size = model_path.stat().st_size
    metrics["model_bytes"] = size
    assert size <= cfg.max_model_bytes, f"model file {size} bytes > {cfg.max_model_bytes}"
