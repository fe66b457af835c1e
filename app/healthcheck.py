"""Container health check: exit 0 only if the app on this machine answers /healthz with 200."""

from __future__ import annotations

import sys
import urllib.request

from app.config import load_config


def main() -> int:
    """Ask the local app for /healthz; the slim image has no curl, so Python does it."""
    url = f"http://127.0.0.1:{load_config().port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as reply:
            return 0 if reply.status == 200 else 1
    except OSError as err:
        print(f"{url}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
