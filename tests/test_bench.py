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
    code = bench.main(["--sizes", "32", "--requests", "20", "--concurrency", "1", "2",
                       "--repeats", "5", "--max-seconds", "30"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "32 px: single-thread ONNX Runtime forward" in out and "-> bound" in out
    for server in ("onnx app", "eager ref"):
        for concurrency in (1, 2):
            assert f"32 px, {server}, concurrency {concurrency}: 20/20 ok, 0 errors" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("| 32 |")]
    assert len(rows) == 4 and all(ln.split("|")[7].strip() == "0" for ln in rows)  # errors
    assert "installed size of app/requirements.txt" in out
    assert "target 32 px >= 0.7 of the bound" in out and "target RSS <= 300 MB" in out


def test_the_bench_upload_is_a_512_by_384_jpeg() -> None:
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(bench.upload_image()))
    assert (image.format, image.size) == ("JPEG", (512, 384))


def test_installed_size_follows_dependencies(tmp_path: Path) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# comment\nflask==3.1.3\n")
    size, dists = bench.installed_mb(reqs)
    assert {"flask", "werkzeug", "jinja2"} <= set(dists) and size > 1
