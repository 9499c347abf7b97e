"""Objectives: extraction from records, which records count, and the min-sample rule."""

from __future__ import annotations

import pytest

from trayllm.slo.objectives import (
    CLIENT_FAULT,
    DEFAULT_OBJECTIVES,
    SERVER_FAULT,
    Objective,
    evaluate,
)
from trayllm.slo.window import RollingWindow
from trayllm.telemetry.schema import ERROR_TYPES

DEFAULTS = {o.name: o for o in DEFAULT_OBJECTIVES}
TTFT = DEFAULTS["first_token_latency_p99"]
VRAM = DEFAULTS["peak_vram"]
ERRORS = DEFAULTS["error_rate"]


def test_defaults_are_the_deployment_guide():
    assert (TTFT.kind, TTFT.percentile, TTFT.threshold, TTFT.field, TTFT.unit) == (
        "percentile",
        99,
        3.0,
        "llm.ttft.ns",
        "s",
    )
    assert (VRAM.kind, VRAM.threshold, VRAM.field) == ("max", 0.8, "llm.vram.peak.pct")
    assert (ERRORS.kind, ERRORS.threshold, ERRORS.field) == ("ratio", 0.001, "error.type")
    assert TTFT.budget_fraction == pytest.approx(0.01)  # P99: 1 % may be slower
    assert ERRORS.budget_fraction == 0.001
    assert VRAM.budget_fraction is None


def test_every_error_type_is_classified_once():
    assert not CLIENT_FAULT & SERVER_FAULT
    assert set(ERROR_TYPES) == CLIENT_FAULT | SERVER_FAULT


def test_latency_extraction_scales_ns_to_seconds():
    assert TTFT.from_record({"llm": {"ttft": {"ns": 2_500_000_000}}}) == pytest.approx(2.5)
    assert TTFT.from_record({"llm.ttft.ns": 1_000_000_000}) == pytest.approx(1.0)  # flat record
    assert TTFT.from_record({"llm": {"queue": {"ns": 5}}}) is None  # no first token: not counted
    assert VRAM.from_record({"llm": {"vram": {"peak": {"pct": 0.75}}}}) == 0.75
    assert VRAM.from_record({"llm": {"model": {"device": "cpu"}}}) is None


@pytest.mark.parametrize("error_type", sorted(CLIENT_FAULT))
def test_client_faults_do_not_count(error_type):
    assert ERRORS.from_record({"event": {"outcome": "failure"}, "error": {"type": error_type}}) is None


@pytest.mark.parametrize("error_type", sorted(SERVER_FAULT))
def test_server_faults_burn(error_type):
    assert ERRORS.from_record({"event": {"outcome": "failure"}, "error": {"type": error_type}}) == 1.0


def test_success_is_a_good_event_and_unknown_types_burn():
    assert ERRORS.from_record({"event": {"outcome": "success"}}) == 0.0
    assert ERRORS.from_record({"error": {"type": "something_new"}}) == 1.0


def _window(values, start=0.0):
    return RollingWindow(3600, [(start + i, v) for i, v in enumerate(values)])


def test_min_samples_rule():
    p50 = Objective("p50", "percentile", "x", percentile=50, threshold=2.0, window_s=3600, min_samples=5)
    four = _window([1.0, 1.0, 3.0, 3.0])
    ev = evaluate(p50, four, now=100)
    # 4 < 5 samples: insufficient, though the value (rank ceil(2.0)=2 -> 1.0) is still reported
    assert (ev.state_hint, ev.samples, ev.value) == ("insufficient", 4, 1.0)
    five = _window([1.0, 1.0, 3.0, 3.0, 3.0])
    ev = evaluate(p50, five, now=100)
    # 5 samples: rank ceil(2.5)=3 -> 3.0 > 2.0
    assert (ev.state_hint, ev.samples, ev.value) == ("breach", 5, 3.0)
    empty = evaluate(p50, RollingWindow(3600), now=100)
    assert (empty.state_hint, empty.samples, empty.value) == ("insufficient", 0, None)


def test_p99_breaches_on_the_second_slow_request_of_a_hundred():
    # 99 fast + 1 slow: sorted rank 99 is fast -> 1.0, ok; 98 fast + 2 slow: rank 99 is slow -> 5.0, breach
    one = evaluate(TTFT, _window([1.0] * 99 + [5.0]), now=200)
    two = evaluate(TTFT, _window([1.0] * 98 + [5.0] * 2), now=200)
    assert (one.value, one.state_hint) == (1.0, "ok")
    assert (two.value, two.state_hint) == (5.0, "breach")
    assert evaluate(TTFT, _window([1.0] * 99), now=200).state_hint == "insufficient"  # 99 < min 100


def test_threshold_is_the_most_allowed_and_window_applies():
    mx = Objective("m", "max", "x", threshold=3.0, window_s=60)
    assert evaluate(mx, _window([1.0, 3.0]), now=10).state_hint == "ok"  # 3.0 is not above 3.0
    assert evaluate(mx, _window([1.0, 3.5]), now=10).state_hint == "breach"
    # objective window 60 s inside a 3600 s RollingWindow: at now=100 only samples in (40, 100] count
    w = RollingWindow(3600, [(10, 9.0), (50, 1.0)])
    assert evaluate(mx, w, now=100).value == 1.0


def test_error_rate_ratio():
    # 1000 counted requests: 1 bad = 0.1 %, exactly the threshold -> ok; 2 bad = 0.2 % -> breach
    assert evaluate(ERRORS, _window([1.0] + [0.0] * 999), now=2000).state_hint == "ok"
    ev = evaluate(ERRORS, _window([1.0, 1.0] + [0.0] * 998), now=2000)
    assert (ev.value, ev.state_hint, ev.samples) == (pytest.approx(0.002), "breach", 1000)


@pytest.mark.parametrize(
    "kw",
    [
        {"kind": "median"},
        {"kind": "percentile"},  # no percentile
        {"kind": "max", "percentile": 99},
        {"kind": "max", "min_samples": 0},
        {"kind": "max", "window_s": 0},
    ],
)
def test_invalid_objectives(kw):
    args = {"name": "x", "kind": "max", "field": "f", "threshold": 1.0, "window_s": 60} | kw
    with pytest.raises(ValueError):
        Objective(**args)
