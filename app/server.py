"""The WSGI entry point: `gunicorn --config app/gunicorn.conf.py app.server:app`."""

from __future__ import annotations

import logging

from app.config import load_config
from app.predictor import ModelLoadError
from app.web import create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

try:
    app = create_app(load_config())
except ModelLoadError as err:
    # The worker stops here; gunicorn then shuts down with "Worker failed to boot".
    logging.getLogger("app.server").critical("refusing to start: %s", err)
    raise
