"""The lab report's digest: SHA-256 of its canonical JSON, shared by the report and the checker."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

SCHEMA_ID = "gourmetgram-lab-report/1"
SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "lab-report-v1.schema.json"
ALGORITHM = "sha256"


def canonical(value: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, ASCII, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


def digest(report: dict) -> str:
    """The hex digest over every part of the report except the digest itself."""
    body = {k: v for k, v in report.items() if k != "digest"}
    return hashlib.new(ALGORITHM, canonical(body)).hexdigest()


def seal(report: dict) -> dict:
    """The report with its digest added."""
    return {**report, "digest": {"algorithm": ALGORITHM, "value": digest(report)}}
