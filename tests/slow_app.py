"""Test-only WSGI target: the real app, with every /predict made slower inside Flask.

`gunicorn ... tests.slow_app:app` with SLOW_APP_DELAY_S set. The delay runs after the app's
own timer starts, so the app's latency histogram records it, as it would a slow model.
"""

from __future__ import annotations

import os
import time

from flask import request

from app.server import app

DELAY_S = float(os.environ["SLOW_APP_DELAY_S"])


@app.before_request
def slow_down() -> None:
    """Sleep before a prediction (registered after the app's own timer)."""
    if request.path == "/predict":
        time.sleep(DELAY_S)
