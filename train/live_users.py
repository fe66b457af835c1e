"""Play live users against the app: photos POSTed to /predict at a set rate for a set time.

    python live_users.py --url http://FLOATING_IP/ --rate 5 --duration 600

The run is bounded (at most MAX_DURATION_S seconds and MAX_RATE requests per second) and
stops by itself; it prints one line per minute and a summary. The photos are the app's
bundled samples (app/samples) unless --images names another folder of .jpg files.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import config  # noqa: F401 - puts the repository root (app/) on the import path

from app.client import Client, multipart
from app.config import SAMPLES_DIR

MAX_DURATION_S = 3600.0
MAX_RATE = 50.0


@dataclass
class Played:
    """What a run sent and what came back."""

    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: int = 0  # no HTTP answer at all (connection refused, timeout)
    elapsed_s: float = 0.0

    def summary(self) -> str:
        """One line: requests, answers by status, failures, rate."""
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items())) or "none"
        rate = self.sent / self.elapsed_s if self.elapsed_s else 0.0
        return (f"{self.sent} requests in {self.elapsed_s:.0f} s ({rate:.1f}/s); "
                f"answers {by_status}; no answer: {self.failures}")


def load_images(folder: Path) -> list[tuple[str, bytes]]:
    """Every .jpg of a folder as (file name, bytes), sorted; ValueError if there is none."""
    images = [(p.name, p.read_bytes()) for p in sorted(folder.glob("*.jpg"))]
    if not images:
        raise ValueError(f"no .jpg files in {folder}")
    return images


def play(
    base_url: str,
    images: list[tuple[str, bytes]],
    rate: float,
    duration_s: float,
    users: int = 2,
    max_requests: int | None = None,
    progress: float = 0.0,
) -> Played:
    """Send the images in turn, `rate` per second shared by `users` threads, until time is up."""
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate must be above 0 and at most {MAX_RATE:g} per second, not {rate}")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration must be above 0 and at most {MAX_DURATION_S:g} s")
    if users < 1 or not images:
        raise ValueError("at least one user and one image are needed")
    played = Played()
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + duration_s
    next_progress = start + progress if progress else None

    def user() -> None:
        nonlocal next_progress
        client = Client(base_url, timeout=10)
        try:
            while True:
                with lock:
                    n = played.sent
                    if max_requests is not None and n >= max_requests:
                        return
                    due = start + n / rate
                    if due >= deadline:
                        return
                    played.sent += 1
                time.sleep(max(0.0, due - time.monotonic()))
                name, data = images[n % len(images)]
                body, content_type = multipart("file", name, data)
                try:
                    status = client.request("POST", "/predict", body,
                                            {"Content-Type": content_type}).status
                except (OSError, http.client.HTTPException):
                    status = None
                with lock:
                    if status is None:
                        played.failures += 1
                    else:
                        played.statuses[status] += 1
                    if next_progress and time.monotonic() >= next_progress:
                        next_progress += progress
                        print(played.summary(), flush=True)
        finally:
            client.close()

    threads = [threading.Thread(target=user, daemon=True) for _ in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration_s + 15)
    played.elapsed_s = time.monotonic() - start
    return played


def main(argv: list[str] | None = None) -> int:
    """Run the users; exit 0 when the app answered at least once, 1 when it never did."""
    p = argparse.ArgumentParser(prog="live_users.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="the app's address, e.g. http://FLOATING_IP/")
    p.add_argument("--rate", type=float, default=5.0, help="requests per second (default 5)")
    p.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    p.add_argument("--users", type=int, default=2, help="concurrent users (default 2)")
    p.add_argument("--images", type=Path, default=SAMPLES_DIR, help="folder of .jpg photos")
    args = p.parse_args(argv)
    try:
        played = play(args.url, load_images(args.images), args.rate, args.duration,
                      users=args.users, progress=60.0)
    except ValueError as e:
        print(f"live_users.py: {e}", file=sys.stderr)
        return 2
    print(played.summary(), flush=True)
    return 0 if played.statuses else 1


if __name__ == "__main__":
    sys.exit(main())
