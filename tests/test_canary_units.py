"""The canary gate's arithmetic and command line, without a Prometheus."""

from __future__ import annotations

import math

import canary
import pytest


def test_js_divergence_is_zero_for_equal_shares_and_one_for_disjoint_ones() -> None:
    assert canary.js_divergence({"a": 2, "b": 2}, {"a": 10, "b": 10}) == pytest.approx(0)
    assert canary.js_divergence({"a": 5}, {"b": 7}) == pytest.approx(1)
    p, q = {"a": 3, "b": 1}, {"a": 1, "b": 1, "c": 2}
    assert canary.js_divergence(p, q) == pytest.approx(canary.js_divergence(q, p))
    assert 0 < canary.js_divergence(p, q) < 1
    with pytest.raises(ValueError, match="at least one prediction"):
        canary.js_divergence({}, {"a": 1})


def figures(requests: float = 200, errors: float = 0, p95: float = 0.05,
            classes: dict | None = None) -> canary.Figures:
    """One side's figures, healthy unless told otherwise."""
    return canary.Figures(requests, errors, p95, classes or {"a": 100, "b": 100})


@pytest.mark.parametrize(("side", "rule"), [
    (figures(requests=99), "too few requests to judge"),
    (figures(errors=3), "error ratio"),
    (figures(p95=0.05 * 1.25 + 0.05 + 0.001), "p95 latency"),
    (figures(classes={"a": 200}), "predictions"),
])
def test_each_rule_refuses_just_past_its_threshold(side: canary.Figures, rule: str) -> None:
    verdict = canary.judge(side, figures(), canary.Thresholds())
    assert [r.split(":")[0] for r in verdict.refusals] == [rule]


def test_a_canary_at_every_threshold_passes() -> None:
    edge = figures(requests=100, errors=1, p95=0.05 * 1.25 + 0.05,
                   classes={"a": 100, "b": 100})
    verdict = canary.judge(edge, figures(), canary.Thresholds())
    assert verdict.passed, verdict.refusals
    assert not math.isnan(verdict.divergence)


def test_window_and_version_are_checked() -> None:
    with pytest.raises(Exception, match="duration"):
        canary.check_window("10 minutes")
    with pytest.raises(ValueError, match="number"):
        canary.queries("3 or 1", "10m")
    assert canary.main(["judge", "--version", "x", "--prometheus", "http://127.0.0.1:1"]) == \
        canary.USAGE


def test_a_decision_keeps_the_outcome_the_rule_and_the_figures() -> None:
    slow = figures(p95=0.5)
    limits = canary.Thresholds()
    kept = canary.decision(canary.judge(slow, figures(), limits), "4", "10m", limits, when=0)
    assert kept["time"] == "1970-01-01T00:00:00Z"
    assert (kept["version"], kept["window"], kept["passed"]) == ("4", "10m", False)
    assert kept["rules_refused"] == ["p95 latency"]
    assert kept["canary"]["p95_s"] == 0.5 and kept["production"]["p95_s"] == 0.05
    assert kept["thresholds"]["p95_ratio"] == limits.p95_ratio
    idle = canary.decision(canary.judge(figures(requests=0, p95=math.nan), figures(), limits),
                           "4", "10m", limits)
    # No data is None in JSON, not NaN (which json.dumps would write and JSON forbids).
    assert idle["canary"]["p95_s"] is None and idle["divergence"] is None
    assert idle["rules_refused"] == ["too few requests to judge"]
