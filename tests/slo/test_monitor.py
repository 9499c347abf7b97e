"""SloMonitor over real-shaped records: alert keys, min samples, hysteresis end to end, burn alerts, OOM,
restore, and agreement with the offline report."""

from __future__ import annotations

import pytest
from slo_records import NOW, T0, record

from trayllm.config import load_settings
from trayllm.slo.monitor import SloMonitor, severity_of
from trayllm.slo.objectives import DEFAULT_OBJECTIVES, Objective, configured_objectives
from trayllm.slo.report import slo_report

T = T0.timestamp()

TTFT = Objective(
    name="ttft",
    kind="percentile",
    field="llm.ttft.ns",
    percentile=99,
    threshold=0.5,
    scale=1e-9,
    unit="s",
    window_s=10.0,
    min_samples=3,
)
ERRORS = Objective(
    name="errors", kind="ratio", field="error.type", threshold=0.01, unit="ratio", window_s=3000.0, min_samples=10
)


def monitor(*objectives: Objective, **kw: float) -> SloMonitor:
    return SloMonitor(objectives or (TTFT,), clock=lambda: pytest.fail("the monitor read its clock"), **kw)


def test_alert_keys_and_severities():
    m = monitor(*DEFAULT_OBJECTIVES)
    assert m.keys == [
        "slo.first_token_latency_p99",
        "slo.peak_vram",
        "burn.error_rate.fast_burn",
        "burn.error_rate.slow_burn",
        "oom",
    ]
    assert severity_of("oom") == "critical" and severity_of("slo.peak_vram") == "warning"
    assert set(m.states().values()) == {"ok"}


def test_nothing_fires_below_the_minimum_sample():
    m = monitor()
    # two slow requests: P99 = 2 s, far above 0.5 s, but 2 < min_samples 3
    for i in range(2):
        m.observe(record(i, duration_s=0, ttft_s=2.0))
    assert m.evaluate(T + 5) == []
    m.observe(record(3, duration_s=0, ttft_s=2.0))  # the third makes it count
    [event] = m.evaluate(T + 5)
    assert (event.key, event.state, event.value) == ("slo.ttft", "firing", 2.0)


def test_values_oscillating_around_the_threshold_fire_once_and_resolve_once():
    m = monitor()
    events = []
    # one request a second; the window (10 s) holds the last 10, P99 of < 100 samples is their max.
    # ttft alternates just above and just below 0.5 s: the max stays in or above the band [0.45, 0.5]
    for t in range(30):
        m.observe(record(t, duration_s=0, ttft_s=0.52 if t % 2 else 0.47))
        events += m.evaluate(T + t)
    assert [(e.key, e.state) for e in events] == [("slo.ttft", "firing")]
    # then it really recovers: once the last slow one has left the window, it resolves, once
    for t in range(30, 50):
        m.observe(record(t, duration_s=0, ttft_s=0.1))
        events += m.evaluate(T + t)
    assert [e.state for e in events] == ["firing", "resolved"]
    assert events[1].at == T + 39  # the last 0.52 s sample (t=29) is out of the 10 s window at t=39
    assert events[1].value == pytest.approx(0.1)


def test_the_same_oscillation_without_hysteresis_would_flap():
    m = monitor(margin=0.0)
    events = []
    for t in range(30):
        # bursts: 12 s of 0.52 s, then 12 s of 0.47 s, so the window max crosses 0.5 both ways
        m.observe(record(t, duration_s=0, ttft_s=0.52 if (t // 12) % 2 == 0 else 0.47))
        events += m.evaluate(T + t)
    assert [e.state for e in events] == ["firing", "resolved", "firing"]


def test_error_burn_alerts_by_hand():
    m = monitor(ERRORS)
    # 100 requests in the last 50 minutes, 2 server errors and 5 client errors (not counted at all):
    # burn = (2/100) / 0.01 = 2.0 over every window, below both factors (14.4 fast, 6 slow)
    for i in range(100):
        m.observe(record(i * 30, duration_s=0, error_type="timeout" if i in (10, 90) else None))
    for i in range(5):
        m.observe(record(i * 30 + 1, duration_s=0, error_type="invalid_request"))
    assert m.evaluate(T + 3000) == []
    # the window pairs at window 3000 s: fast 6.25 s / 0.52 s; slow 37.5 s / 3.125 s (scaled from 30 days).
    # One timeout now: the fast long window (6.25 s) holds just it, burn 1/1/0.01 = 100 > 14.4; but the
    # long window needs min_samples (10) requests: no alert yet
    m.observe(record(3000, duration_s=0, error_type="timeout"))
    assert m.evaluate(T + 3000.1) == []
    for k in range(9):  # nine more errors within the short windows
        m.observe(record(3000 + 0.01 * (k + 1), duration_s=0, error_type="queue_full"))
    events = m.evaluate(T + 3000.2)
    assert {(e.key, e.state) for e in events} == {
        ("burn.errors.fast_burn", "firing"),
        ("burn.errors.slow_burn", "firing"),
    }
    fast = next(e for e in events if e.key.endswith("fast_burn"))
    assert fast.value == pytest.approx(100.0) and fast.threshold == 14.4
    # quiet successes, four a second: the windows calm down and both alerts resolve (the fast pair's long
    # window, 6.25 s, then holds 25 requests: enough to judge; with fewer than 10 nothing would resolve)
    for k in range(160):
        m.observe(record(3001 + k / 4, duration_s=0))
    events = m.evaluate(T + 3040)
    assert {(e.key, e.state) for e in events} == {
        ("burn.errors.fast_burn", "resolved"),
        ("burn.errors.slow_burn", "resolved"),
    }


def test_every_oom_fires_and_a_quiet_period_resolves():
    m = monitor(oom_quiet_s=60.0)
    first = m.oom("out of memory #1", now=T)
    second = m.oom("out of memory #2", now=T + 10)
    assert [(e.key, e.state, e.message) for e in (first, second)] == [
        ("oom", "firing", "out of memory #1"),
        ("oom", "firing", "out of memory #2"),
    ]
    assert m.states()["oom"] == "firing"  # the latest message is kept by the AlertCenter, for /v1/status
    assert m.evaluate(T + 69) == []
    [resolved] = m.evaluate(T + 70)
    assert (resolved.key, resolved.state) == ("oom", "resolved")
    assert m.states()["oom"] == "resolved"


def test_restored_firing_alert_is_not_announced_again_but_still_resolves():
    m = monitor()
    m.restore("slo.ttft", "firing", now=T)
    m.restore("slo.removed_since", "firing", now=T)  # an objective no longer configured: ignored
    for t in range(3):
        m.observe(record(t, duration_s=0, ttft_s=2.0))
    assert m.evaluate(T + 3) == []  # still breaching: it was announced before the restart
    assert m.states()["slo.ttft"] == "firing"
    for t in range(20, 23):
        m.observe(record(t, duration_s=0, ttft_s=0.1))
    [event] = m.evaluate(T + 23)
    assert (event.key, event.state) == ("slo.ttft", "resolved")


def test_the_live_report_equals_the_offline_report_for_the_same_records():
    records = [
        record(
            i * 7,
            duration_s=0.5 + i % 3,
            ttft_s=0.05 * (i % 11),
            vram_pct=0.5 + 0.01 * (i % 40),
            error_type="oom" if i % 37 == 0 else "cancelled" if i % 5 == 0 else None,
        )
        for i in range(80)
    ]
    m = SloMonitor(DEFAULT_OBJECTIVES)
    for r in reversed(records):  # arrival order does not matter
        m.observe(r)
    assert m.report(NOW) == slo_report(DEFAULT_OBJECTIVES, records, NOW)


def test_configured_objectives_follow_the_settings():
    settings = load_settings(
        {
            "slo_ttft_p99_s": 1.5,
            "slo_ttft_window_s": 60,
            "slo_min_samples": 7,
            "vram_limit": 0.9,
            "slo_error_rate": 0.01,
            "slo_error_window_days": 7,
        },
        environ={},
    )
    ttft, vram, errors = configured_objectives(settings)
    assert (ttft.threshold, ttft.window_s, ttft.min_samples, ttft.percentile) == (1.5, 60, 7, 99)
    assert (vram.threshold, vram.window_s) == (0.9, 300)
    assert (errors.threshold, errors.window_s, errors.min_samples) == (0.01, 7 * 86400, 7)
    assert configured_objectives(load_settings({}, environ={}))[0].threshold == DEFAULT_OBJECTIVES[0].threshold
