"""Canary analysis: judge the canary against production on live Prometheus metrics.

`python canary.py judge --version 3 --window 10m` exits 0 when canary version 3 may move on
to production, 1 when a rule refuses it (the message has the figures), 2 on a bad command
line and 5 when Prometheus cannot be reached or had a server error (worth retrying; never a
pass). promote-model runs the same check as `ops.py canary-analysis`.

The rules, each with its threshold in `Thresholds` (the one place they are set):
  too few requests  - canary (or production) answered fewer than min_requests /predict calls
  error ratio       - canary's 5xx share exceeds production's by more than max_error_increase
  p95 latency       - canary's p95 exceeds production's p95 * p95_ratio + p95_slack_s
  predictions       - the Jensen-Shannon divergence (base 2, 0 = same, 1 = disjoint) between
                      the two environments' predicted-class shares exceeds max_class_divergence
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields

# The platform chart's Prometheus (k8s/platform/templates/prometheus.yaml).
PROMETHEUS_URL = "http://prometheus.gourmetgram-platform.svc.cluster.local:9090"
DEFAULT_WINDOW = "10m"
# The route live users call; health probes and scrapes would drown it otherwise.
ENDPOINT = "/predict"
OK, REFUSED, USAGE, UNREACHABLE = 0, 1, 2, 5


@dataclass(frozen=True)
class Thresholds:
    """The canary gate's thresholds; each has a command-line flag of the same name."""

    # Requests each environment must have answered in the window before the gate judges.
    min_requests: int = 100
    # Canary's error ratio may exceed production's by at most this much (absolute, 0.01 = 1 %).
    max_error_increase: float = 0.01
    # Canary's p95 may be at most p95_ratio times production's, plus p95_slack_s (the
    # histogram's buckets are 25-50 ms apart near the typical latency, so a fixed slack too).
    p95_ratio: float = 1.25
    p95_slack_s: float = 0.05
    # Jensen-Shannon divergence (bits) between the predicted-class distributions.
    max_class_divergence: float = 0.1


class PrometheusUnreachable(Exception):
    """Prometheus could not be reached or answered with a server error (retryable)."""


class QueryError(Exception):
    """Prometheus refused a query (a bug in the query, not a reason to retry)."""


@dataclass(frozen=True)
class Figures:
    """What one environment did in the window."""

    requests: float
    errors: float
    p95_s: float
    classes: dict[str, float]

    @property
    def error_ratio(self) -> float:
        """Share of requests that failed with a 5xx status; 0 without requests.

        increase() extrapolates each series on its own, so errors can come out a hair above
        requests; the share is capped at 1.
        """
        return min(1.0, self.errors / self.requests) if self.requests else 0.0


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: the figures, and the reasons it refused (none = pass)."""

    canary: Figures
    production: Figures
    divergence: float
    refusals: list[str]

    @property
    def passed(self) -> bool:
        """True when no rule refused."""
        return not self.refusals


def users_seconds(rate: float, canary_percent: float, scrape_interval_s: float,
                  limits: Thresholds | None = None) -> int:
    """How long live users must play at rate for canary to answer min_requests, with margin.

    Canary receives canary_percent of the requests, so it needs min_requests / (rate * share)
    seconds; 20 % more covers a split that is not exact, and two scrape intervals the last
    requests that Prometheus has not sampled yet when the gate asks.
    """
    limits = limits or Thresholds()
    needed = limits.min_requests / (rate * canary_percent / 100)
    return math.ceil(needed * 1.2 + 2 * scrape_interval_s)


def check_window(text: str) -> str:
    """argparse type: a Prometheus duration such as 30s, 10m or 1h."""
    if not re.fullmatch(r"[1-9]\d*(ms|s|m|h|d)", text):
        raise argparse.ArgumentTypeError(f"a window is a duration like 30s or 10m, not {text!r}")
    return text


def selectors(version: str) -> dict[str, str]:
    """The label matchers of each side: this canary version, and all of production."""
    if not version.isdigit():
        raise ValueError(f"a model version is a number, not {version!r}")
    return {
        "canary": f'environment="canary",version="{version}"',
        "production": 'environment="production"',
    }


def queries(version: str, window: str) -> dict[str, str]:
    """The PromQL the gate runs, by figure; each sums over one side and groups by environment."""
    check_window(window)
    out = {}
    for side, match in selectors(version).items():
        where = f'{match},endpoint="{ENDPOINT}"'
        out[f"{side}:requests"] = (
            f"sum by (environment) (increase(gourmetgram_http_requests_total{{{where}}}[{window}]))"
        )
        out[f"{side}:errors"] = (
            f"sum by (environment) (increase(gourmetgram_http_requests_total"
            f'{{{where},status=~"5.."}}[{window}]))'
        )
        out[f"{side}:p95"] = (
            "histogram_quantile(0.95, sum by (environment, le) (rate("
            f"gourmetgram_http_request_duration_seconds_bucket{{{where}}}[{window}])))"
        )
        out[f"{side}:classes"] = (
            "sum by (environment, food_class) (increase("
            f"gourmetgram_predictions_total{{{match}}}[{window}]))"
        )
    return out


def query(base_url: str, promql: str, timeout: float = 10.0) -> list[dict]:
    """Run one instant query; return its vector. Raises PrometheusUnreachable or QueryError."""
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as e:
        if e.code >= 500:
            raise PrometheusUnreachable(f"Prometheus at {base_url} answered HTTP {e.code}") from e
        detail = e.read()[:300].decode(errors="replace")
        raise QueryError(f"Prometheus refused {promql!r}: HTTP {e.code} {detail}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise PrometheusUnreachable(f"Prometheus at {base_url} is unreachable: {reason}") from e
    except ValueError as e:
        raise PrometheusUnreachable(f"Prometheus at {base_url} sent no JSON: {e}") from e
    if body.get("status") != "success" or body["data"]["resultType"] != "vector":
        raise QueryError(f"Prometheus could not run {promql!r}: {body.get('error', body)}")
    return body["data"]["result"]


def _total(vector: list[dict]) -> float:
    """Sum of a vector's values; NaN values (no data in a quantile) are skipped."""
    values = [float(s["value"][1]) for s in vector]
    return sum(v for v in values if not math.isnan(v))


def _first(vector: list[dict]) -> float:
    """The value of a one-series vector, NaN when it is empty or not a number."""
    return float(vector[0]["value"][1]) if vector else math.nan


def collect(base_url: str, version: str, window: str) -> dict[str, Figures]:
    """Query Prometheus for both sides' figures over the window."""
    qs = queries(version, window)
    figures = {}
    for side in ("canary", "production"):
        classes: dict[str, float] = {}
        for series in query(base_url, qs[f"{side}:classes"]):
            name = series["metric"].get("food_class", "")
            classes[name] = classes.get(name, 0.0) + float(series["value"][1])
        figures[side] = Figures(
            requests=_total(query(base_url, qs[f"{side}:requests"])),
            errors=_total(query(base_url, qs[f"{side}:errors"])),
            p95_s=_first(query(base_url, qs[f"{side}:p95"])),
            classes=classes,
        )
    return figures


def js_divergence(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Jensen-Shannon divergence in bits (0 to 1) between two count tables over classes."""
    names = set(p) | set(q)
    p_total, q_total = sum(p.values()), sum(q.values())
    if p_total <= 0 or q_total <= 0:
        raise ValueError("both distributions need at least one prediction")

    def kl(a: dict[str, float], m: dict[str, float]) -> float:
        return sum(a[n] * math.log2(a[n] / m[n]) for n in names if a[n] > 0)

    pn = {n: p.get(n, 0.0) / p_total for n in names}
    qn = {n: q.get(n, 0.0) / q_total for n in names}
    mid = {n: (pn[n] + qn[n]) / 2 for n in names}
    return max(0.0, (kl(pn, mid) + kl(qn, mid)) / 2)


def judge(canary: Figures, production: Figures, limits: Thresholds) -> Verdict:
    """Apply the rules to the figures; a refusal names the rule, both figures and the limit."""
    refusals = []
    for side, figs in (("canary", canary), ("production", production)):
        if figs.requests < limits.min_requests:
            refusals.append(f"too few requests to judge: {side} answered {figs.requests:.0f} "
                            f"{ENDPOINT} requests, at least {limits.min_requests} needed")
    divergence = math.nan
    if refusals:
        return Verdict(canary, production, divergence, refusals)
    if canary.error_ratio > production.error_ratio + limits.max_error_increase:
        refusals.append(f"error ratio: canary {canary.error_ratio:.3f} > production "
                        f"{production.error_ratio:.3f} + {limits.max_error_increase:g}")
    p95_limit = production.p95_s * limits.p95_ratio + limits.p95_slack_s
    if math.isnan(canary.p95_s) or math.isnan(production.p95_s):
        refusals.append("p95 latency: no latency data for "
                        + ("canary" if math.isnan(canary.p95_s) else "production"))
    elif canary.p95_s > p95_limit:
        refusals.append(f"p95 latency: canary {canary.p95_s:.3f} s > production "
                        f"{production.p95_s:.3f} s x {limits.p95_ratio:g} + "
                        f"{limits.p95_slack_s:g} s = {p95_limit:.3f} s")
    if sum(canary.classes.values()) > 0 and sum(production.classes.values()) > 0:
        divergence = js_divergence(canary.classes, production.classes)
        if divergence > limits.max_class_divergence:
            refusals.append(f"predictions: Jensen-Shannon divergence of the class shares "
                            f"{divergence:.3f} bits > {limits.max_class_divergence:g}")
    else:
        refusals.append("predictions: no predictions counted for "
                        + ("canary" if not sum(canary.classes.values()) else "production"))
    return Verdict(canary, production, divergence, refusals)


def report(verdict: Verdict, version: str, window: str) -> str:
    """Figures of both sides on a few lines, then the verdict."""
    c, p = verdict.canary, verdict.production
    lines = [
        f"canary version {version} vs production over {window} ({ENDPOINT}):",
        f"  requests     {c.requests:10.0f} {p.requests:10.0f}",
        f"  error ratio  {c.error_ratio:10.3f} {p.error_ratio:10.3f}",
        f"  p95 latency  {c.p95_s:9.3f}s {p.p95_s:9.3f}s",
        f"  class divergence (Jensen-Shannon, bits) {verdict.divergence:.3f}",
    ]
    if verdict.passed:
        lines.append("PASS: canary may be promoted")
    else:
        lines += ["REFUSED:"] + [f"  - {r}" for r in verdict.refusals]
    return "\n".join(lines)


def _number(value: float) -> float | None:
    """A figure for JSON: NaN (no data) becomes None."""
    return None if math.isnan(value) else round(value, 6)


def decision(verdict: Verdict, version: str, window: str, limits: Thresholds,
             when: float | None = None) -> dict:
    """The verdict as a record to keep: outcome, the rules that refused, figures and limits."""
    def side(f: Figures) -> dict:
        return {"requests": _number(f.requests), "error_ratio": _number(f.error_ratio),
                "p95_s": _number(f.p95_s)}

    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
        "version": version, "window": window, "passed": verdict.passed,
        # Each refusal starts with its rule's name ("p95 latency: canary ...").
        "rules_refused": [r.split(":")[0] for r in verdict.refusals],
        "refusals": verdict.refusals,
        "canary": side(verdict.canary), "production": side(verdict.production),
        "divergence": _number(verdict.divergence), "thresholds": asdict(limits),
    }


def analyse(base_url: str, version: str, window: str, limits: Thresholds) -> Verdict:
    """Collect the figures from Prometheus and judge them."""
    figures = collect(base_url, version, window)
    return judge(figures["canary"], figures["production"], limits)


def add_threshold_flags(p: argparse.ArgumentParser) -> None:
    """One flag per field of Thresholds, defaulting to its value there."""
    for f in fields(Thresholds):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
                       help=f"default {f.default}")


def add_gate_flags(p: argparse.ArgumentParser) -> None:
    """The flags of a gate run: version, window, Prometheus, thresholds."""
    p.add_argument("--version", required=True, help="the canary's model version")
    p.add_argument("--window", type=check_window, default=DEFAULT_WINDOW,
                   help=f"how far back to look (default {DEFAULT_WINDOW})")
    p.add_argument("--prometheus", default=PROMETHEUS_URL, help=f"default {PROMETHEUS_URL}")
    add_threshold_flags(p)


def thresholds_from(args: argparse.Namespace) -> Thresholds:
    """The Thresholds the command line asked for."""
    return Thresholds(**{f.name: getattr(args, f.name) for f in fields(Thresholds)})


def run_gate(args: argparse.Namespace,
             keep: Callable[[dict], None] | None = None) -> tuple[int, str]:
    """Run the gate for parsed flags; hand each verdict's decision() to keep; (code, message)."""
    if not args.version.isdigit():
        return USAGE, f"a model version is a number, not {args.version!r}"
    limits = thresholds_from(args)
    try:
        verdict = analyse(args.prometheus, args.version, args.window, limits)
    except PrometheusUnreachable as e:
        return UNREACHABLE, f"{e} (retry; the gate never passes without data)"
    except QueryError as e:
        return REFUSED, str(e)
    if keep is not None:
        keep(decision(verdict, args.version, args.window, limits))
    message = report(verdict, args.version, args.window)
    return (OK if verdict.passed else REFUSED), message


def main(argv: list[str] | None = None) -> int:
    """`canary.py judge ...`: print the report; exit 0 pass, 1 refused, 5 unreachable."""
    p = argparse.ArgumentParser(prog="canary.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    add_gate_flags(sub.add_parser("judge", help="judge a canary version"))
    args = p.parse_args(argv)
    code, message = run_gate(args)
    print(message, file=sys.stdout if code == OK else sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
