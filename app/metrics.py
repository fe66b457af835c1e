"""Prometheus metrics of the app, correct across gunicorn workers.

With several workers each process counts on its own. prometheus_client's multiprocess
mode (PROMETHEUS_MULTIPROC_DIR, set by app/gunicorn.conf.py before the workers start)
keeps every worker's values in memory-mapped files that /metrics adds up.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS = Counter(
    "gourmetgram_http_requests_total",
    "HTTP requests answered, by route, method and status code.",
    ["endpoint", "method", "status"],
)
LATENCY = Histogram(
    "gourmetgram_http_request_duration_seconds",
    "Time to answer a request, by route.",
    ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PREDICTIONS = Counter(
    "gourmetgram_predictions_total",
    "Predictions returned, by predicted class.",
    ["food_class"],
)
MODEL_INFO = Gauge(
    "gourmetgram_model_info",
    "Always 1; the label says which model version this app serves.",
    ["model_version"],
    multiprocess_mode="livemax",
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def start_class_counts(names: Iterable[str]) -> None:
    """Create each class's prediction counter at 0 before the first request.

    A series that appears with its first increment loses that increment to increase() and
    rate(), which count from a series' first sample. Present from the start at 0, every
    class's predictions are counted, so the canary gate's class shares compare like with like.
    """
    for name in names:
        PREDICTIONS.labels(food_class=name)


def render() -> bytes:
    """The metrics in the Prometheus text format, summed over all workers."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
