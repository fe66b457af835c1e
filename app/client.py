"""A small standard-library HTTP client for the app: single calls and a bounded load test."""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status code and raw body."""

    status: int
    body: bytes

    def json(self) -> dict:
        """The body parsed as a JSON object (ValueError if it is not one)."""
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {type(value).__name__}")
        return value


class Client:
    """Sends requests to one base URL (http or https) over a reusable connection."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.prefix = parts.path.rstrip("/")
        secure = parts.scheme == "https"
        kind = http.client.HTTPSConnection if secure else http.client.HTTPConnection
        self.conn = kind(parts.hostname, parts.port, timeout=timeout)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> Reply:
        """Send one request; the connection reopens by itself when the server closed it."""
        try:
            self.conn.request(method, self.prefix + path, body=body, headers=headers or {})
            response = self.conn.getresponse()
            return Reply(response.status, response.read())
        except Exception:
            self.conn.close()  # leave no half-read response behind for the next call
            raise

    def get(self, path: str) -> Reply:
        """GET a path."""
        return self.request("GET", path)

    def post_file(
        self, path: str, data: bytes, filename: str = "photo.jpg", field_name: str = "file"
    ) -> Reply:
        """POST one file as multipart/form-data."""
        body, content_type = multipart(field_name, filename, data)
        return self.request("POST", path, body, {"Content-Type": content_type})

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def wait_ready(
    client: Client, seconds: float, interval: float, check: Callable[[], None] | None = None
) -> Reply:
    """Poll /readyz until it answers 200; TimeoutError with the last problem after `seconds`.

    `check`, when given, runs before every poll and may raise to stop waiting early.
    """
    deadline = time.monotonic() + seconds
    while True:
        if check:
            check()
        try:
            reply = client.get("/readyz")
            if reply.status == 200:
                return reply
            problem = f"HTTP {reply.status}"
        except (OSError, http.client.HTTPException) as err:
            problem = f"{type(err).__name__}: {err}"
        if time.monotonic() >= deadline:
            raise TimeoutError(problem)
        time.sleep(interval)


def multipart(field_name: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """Encode one file field as a multipart/form-data body; returns (body, content type)."""
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; "
        f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + data + tail, f"multipart/form-data; boundary={boundary}"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class LoadResult:
    """What a load run measured."""

    requested: int
    concurrency: int
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def completed(self) -> int:
        """Requests answered with 200."""
        return len(self.latencies_s)

    @property
    def throughput(self) -> float:
        """Successful requests per second of wall time."""
        return self.completed / self.elapsed_s if self.elapsed_s else 0.0

    def ms(self, q: float) -> float:
        """The q-th latency percentile in milliseconds."""
        return 1000 * percentile(self.latencies_s, q)

    def summary(self) -> str:
        """One line: counts, throughput and latency percentiles."""
        return (
            f"{self.completed}/{self.requested} ok, {len(self.errors)} errors, "
            f"concurrency {self.concurrency}, {self.throughput:.1f} req/s, "
            f"p50 {self.ms(50):.1f} ms, p95 {self.ms(95):.1f} ms, p99 {self.ms(99):.1f} ms"
        )


def run_load(
    base_url: str,
    image: bytes,
    requests: int,
    concurrency: int,
    max_seconds: float = 120.0,
    path: str = "/predict",
) -> LoadResult:
    """POST `image` `requests` times from `concurrency` threads; stop early at max_seconds."""
    result = LoadResult(requested=requests, concurrency=concurrency)
    body, content_type = multipart("file", "load.jpg", image)
    lock = threading.Lock()
    issued = 0
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        nonlocal issued
        client = Client(base_url, timeout=max(1.0, max_seconds))
        try:
            while time.monotonic() < deadline:
                with lock:
                    if issued >= requests:
                        return
                    issued += 1
                start = time.perf_counter()
                try:
                    reply = client.request("POST", path, body, {"Content-Type": content_type})
                    problem = None
                    if reply.status != 200:
                        problem = f"HTTP {reply.status}: {reply.body[:200]!r}"
                except (OSError, http.client.HTTPException) as err:
                    problem = f"{type(err).__name__}: {err}"
                took = time.perf_counter() - start
                with lock:
                    if problem:
                        result.errors.append(problem)
                    else:
                        result.latencies_s.append(took)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 5)
    result.elapsed_s = time.perf_counter() - started
    return result
