"""The staging test suite: integration and load checks against a running app.

    python -m app.staging_tests --url http://A.B.C.D:8081 --expect-version 3

Prints one PASS/FAIL line per check and exits 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import http.client
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.client import Client, Reply, run_load, wait_ready
from app.config import SAMPLES_DIR, sample_file
from app.food11 import CLASS_NAMES, folder_name


class CheckFailed(Exception):
    """A check found the app misbehaving; the message says how."""


@dataclass(frozen=True)
class Outcome:
    """The result of one check."""

    name: str
    passed: bool
    detail: str


def expect_status(reply: Reply, wanted: Callable[[int], bool], what: str) -> dict:
    """Fail unless the status is acceptable and the body is a JSON object; return it."""
    try:
        body = reply.json()
    except ValueError:
        raise CheckFailed(f"HTTP {reply.status}, body is not JSON: {reply.body[:120]!r}") from None
    if not wanted(reply.status):
        raise CheckFailed(f"HTTP {reply.status} (expected {what}): {body.get('error', body)}")
    return body


def ok(reply: Reply) -> dict:
    """Fail unless the reply is 200 with a JSON object."""
    return expect_status(reply, lambda s: s == 200, "200")


def client_error(reply: Reply) -> str:
    """Fail unless the reply is a 4xx JSON error; return a short description."""
    body = expect_status(reply, lambda s: 400 <= s < 500, "4xx")
    if "error" not in body:
        raise CheckFailed(f"HTTP {reply.status} without an 'error' field")
    return f"HTTP {reply.status}: {body['error']}"


def valid_prediction(body: dict) -> str:
    """Fail unless a prediction body names a known class with a probability in [0, 1]."""
    label, p = body.get("prediction"), body.get("probability")
    if label not in CLASS_NAMES:
        raise CheckFailed(f"prediction {label!r} is not one of the Food-11 classes")
    if not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
        raise CheckFailed(f"probability {p!r} is not in [0, 1]")
    return f"{label} ({p:.2f})"


def sample_images(samples_dir: Path) -> dict[str, bytes]:
    """The bundled sample photo of every class; fails if one is missing."""
    missing = [c for c in CLASS_NAMES if not sample_file(c, samples_dir).is_file()]
    if missing:
        raise CheckFailed(f"no sample image in {samples_dir} for {missing}")
    return {c: sample_file(c, samples_dir).read_bytes() for c in CLASS_NAMES}


class Suite:
    """The checks, run in order against one base URL."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.client = Client(args.url, timeout=args.timeout)
        self.outcomes: list[Outcome] = []
        self.answers: dict[str, list] = {}  # class of each sample photo -> its "top" answer

    def check(self, name: str, run: Callable[[], str]) -> bool:
        """Run one check, record and print its outcome."""
        try:
            outcome = Outcome(name, True, run())
        except CheckFailed as err:
            outcome = Outcome(name, False, str(err))
        except (OSError, http.client.HTTPException) as err:
            outcome = Outcome(name, False, f"request failed: {type(err).__name__}: {err}")
        except Exception as err:  # a surprise in one check must not hide the others
            outcome = Outcome(name, False, f"unexpected {type(err).__name__}: {err}")
        self.outcomes.append(outcome)
        print(f"{'PASS' if outcome.passed else 'FAIL'}  {name:<28} {outcome.detail}", flush=True)
        return outcome.passed

    def wait_ready(self) -> str:
        """Poll /readyz until it answers 200 or the wait runs out."""
        try:
            return f"ready: {ok(wait_ready(self.client, self.args.wait, interval=1.0))}"
        except TimeoutError as err:
            raise CheckFailed(f"/readyz not ready: {err}") from None

    def version(self) -> str:
        """/version reports the expected model version."""
        got = str(ok(self.client.get("/version")).get("model_version"))
        if got != self.args.expect_version:
            raise CheckFailed(f"model_version is {got!r}, expected {self.args.expect_version!r}")
        return f"model_version {got}"

    def predict_sample(self, label: str, image: bytes) -> str:
        """/predict returns a valid class for one sample photo."""
        body = ok(self.client.post_file("/predict", image, f"{folder_name(label)}.jpg"))
        detail = valid_prediction(body)
        self.answers[label] = body.get("top")
        return detail + (" = label" if body["prediction"] == label else f", label {label}")

    def answers_differ(self) -> str:
        """Photos of different classes must not all get the very same scores.

        A model that ignores its input (say, one that normalises over the batch and so sees
        nothing in a batch of one photo) answers every request identically.
        """
        distinct = {repr(top) for top in self.answers.values()}
        if len(self.answers) < 2:
            raise CheckFailed(f"only {len(self.answers)} sample photos were classified")
        if len(distinct) == 1:
            raise CheckFailed(f"all {len(self.answers)} photos got the same answer "
                              f"{next(iter(self.answers.values()))!r}: the model ignores its input")
        return f"{len(distinct)} different answers for {len(self.answers)} photos"

    def run(self) -> bool:
        """Run every check; True when all passed."""
        args, client = self.args, self.client
        if not self.check("ready", self.wait_ready):
            return False  # nothing else can pass against an app that is not ready
        self.check("health", lambda: f"{ok(client.get('/healthz'))}")
        self.check("version", self.version)
        samples: dict[str, bytes] = {}

        def find_samples() -> str:
            samples.update(sample_images(args.samples))
            return f"{len(samples)} photos in {args.samples}"

        self.check("sample photos", find_samples)
        for label, image in samples.items():
            self.check(f"predict {label}", lambda lb=label, im=image: self.predict_sample(lb, im))
        if samples:
            self.check("answers follow the photo", self.answers_differ)
        self.check("test endpoint", lambda: valid_prediction(ok(client.get("/test"))))
        self.check("reject non-image bytes", lambda: client_error(
            client.post_file("/predict", b"this is not an image at all", "notes.txt")))
        self.check("reject missing file field", lambda: client_error(
            client.post_file("/predict", b"\xff\xd8\xff", "photo.jpg", field_name="image")))
        self.check("reject empty file", lambda: client_error(
            client.post_file("/predict", b"", "empty.jpg")))
        self.check("reject wrong method", lambda: client_error(client.get("/predict")))
        if samples:
            self.check("load", lambda: self.load(next(iter(samples.values()))))
        return all(o.passed for o in self.outcomes)

    def load(self, image: bytes) -> str:
        """A bounded burst of /predict calls: no errors and p95 within the budget."""
        args = self.args
        result = run_load(args.url, image, args.requests, args.concurrency, args.max_seconds)
        print(f"      load: {result.summary()}", flush=True)
        if result.errors:
            raise CheckFailed(f"{len(result.errors)} failed requests, first: {result.errors[0]}")
        if result.completed < result.requested:
            raise CheckFailed(f"only {result.completed}/{result.requested} requests "
                              f"finished within {args.max_seconds:g} s")
        if result.ms(95) > args.p95_ms:
            raise CheckFailed(f"p95 {result.ms(95):.1f} ms exceeds the {args.p95_ms:g} ms budget")
        return f"{result.throughput:.1f} req/s, p95 {result.ms(95):.1f} ms <= {args.p95_ms:g} ms"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL of the app, e.g. http://HOST:8081")
    parser.add_argument("--expect-version", required=True, help="model version the app must serve")
    parser.add_argument("--requests", type=int, default=200, help="load test: total requests")
    parser.add_argument("--concurrency", type=int, default=4, help="load test: parallel clients")
    parser.add_argument("--p95-ms", type=float, default=1000.0, help="load test: p95 budget")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="load test: stop after this long (unfinished requests fail it)")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="seconds to wait for /readyz before failing")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout (s)")
    parser.add_argument("--samples", type=Path, default=SAMPLES_DIR,
                        help="folder of sample photos, one <class>.jpg per class")
    args = parser.parse_args(argv)
    for name in ("requests", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the suite and print the report; the exit status is 0 only if all checks passed."""
    args = parse_args(argv)
    print(f"Staging tests against {args.url}, expecting model version {args.expect_version}")
    try:
        suite = Suite(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        passed = suite.run()
    finally:
        suite.client.close()
    failed = [o.name for o in suite.outcomes if not o.passed]
    print(f"{len(suite.outcomes) - len(failed)} passed, {len(failed)} failed"
          + (f": {', '.join(failed)}" if failed else ""))
    print("RESULT: PASS" if passed else "RESULT: FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
