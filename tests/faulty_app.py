"""Test-only WSGI target: the real app, with every /predict made slower or failing.

`gunicorn ... tests.faulty_app:app` with FAULTY_APP_DELAY_S (seconds to sleep) and/or
FAULTY_APP_FAIL=1 (answer 500). Both run after the app's own timer starts, so its request
counter and latency histogram record them, as they would a slow or broken model.
"""

from __future__ import annotations

import os
import time

from flask import abort, request

from app.server import app

DELAY_S = float(os.environ.get("FAULTY_APP_DELAY_S", "0"))
FAIL = os.environ.get("FAULTY_APP_FAIL") == "1"


@app.before_request
def misbehave() -> None:
    """Sleep, then fail, before a prediction (registered after the app's own timer)."""
    if request.path != "/predict":
        return
    time.sleep(DELAY_S)
    if FAIL:
        abort(500, description="injected fault (tests/faulty_app.py)")
