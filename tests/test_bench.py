"""The serving benchmark runs and reports its figures (speed itself is not asserted here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import bench
from app.client import LoadResult


def test_cpu_report_shows_the_ceiling_of_the_servers_own_cost() -> None:
    result = LoadResult(requested=100, concurrency=4, elapsed_s=1.0, latencies_s=[0.01] * 100)
    # Over one second: the server used 0.5 CPU-seconds, the client 0.1, the machine 0.7.
    text, other = bench.cpu_report((0.0, 0.0, 0.0), (0.5, 0.1, 0.7), result, cores=2, bound=500)
    assert "server 0.50, load client 0.10, other processes 0.10" in text
    assert "server CPU per request 5.00 ms" in text
    assert "2 cores serve at most 400.0 req/s (0.80 of the bound)" in text
    assert other == pytest.approx(0.1)


@pytest.mark.skipif(not Path("/proc/stat").is_file(),
                    reason="the benchmark reads CPU times from Linux's /proc")
def test_the_benchmark_runs_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    code = bench.main(["--requests", "30", "--concurrency", "1", "2", "--repeats", "5",
                       "--max-seconds", "30"])
    out = capsys.readouterr().out
    assert code == 0, out
    for line in ("compute bound:", "concurrency 1: 30/30 ok, 0 errors",
                 "concurrency 2: 30/30 ok, 0 errors", "cores serve at most",
                 "target (>= 0.9"):
        assert line in out, out
