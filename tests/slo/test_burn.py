"""Error budget arithmetic and the multiwindow rule (SRE workbook: alert only when both windows burn)."""

from __future__ import annotations

import pytest

from trayllm.slo.burn import BurnWindow, MultiWindowBurnAlert, budget_remaining, burn_rate, default_burn_windows
from trayllm.slo.objectives import DEFAULT_OBJECTIVES
from trayllm.slo.window import RollingWindow

DEFAULTS = {o.name: o for o in DEFAULT_OBJECTIVES}


def test_burn_rate_and_budget():
    # 0.1 % target, 3 bad of 1000: error rate 0.3 % = 3x the budget rate; budget 1 bad, spent 3 -> 1 - 3 = -200 %
    assert burn_rate(3, 1000, 0.001) == pytest.approx(3.0)
    assert budget_remaining(3, 1000, 0.001) == pytest.approx(-2.0)
    # 1 bad of 1000: exactly the budget
    assert burn_rate(1, 1000, 0.001) == pytest.approx(1.0)
    assert budget_remaining(1, 1000, 0.001) == pytest.approx(0.0)
    # 1 bad of 4000 at 0.1 %: budget 4, spent 1 -> 75 % left; burn 0.25
    assert budget_remaining(1, 4000, 0.001) == pytest.approx(0.75)
    assert burn_rate(1, 4000, 0.001) == pytest.approx(0.25)
    assert (burn_rate(0, 0, 0.001), budget_remaining(0, 0, 0.001)) == (0.0, 1.0)  # nothing happened


@pytest.mark.parametrize(("bad", "total", "target"), [(2, 1, 0.001), (-1, 5, 0.001), (1, 5, 0.0), (1, 5, 1.5)])
def test_bad_inputs(bad, total, target):
    with pytest.raises(ValueError):
        burn_rate(bad, total, target)


def test_workbook_windows_and_scaling():
    fast, slow = default_burn_windows()  # 30 days: the workbook's numbers
    assert (fast.long_s, fast.short_s, fast.factor) == (3600, 300, 14.4)
    assert (slow.long_s, slow.short_s, slow.factor) == (21600, 1800, 6.0)
    fast7, slow7 = default_burn_windows(7 * 86400)  # k = 7/30: 1 h -> 840 s, 5 min -> 70 s, 6 h -> 5040 s
    assert (fast7.long_s, fast7.short_s, fast7.factor) == (pytest.approx(840), pytest.approx(70), 14.4)
    assert (slow7.long_s, slow7.short_s) == (pytest.approx(5040), pytest.approx(420))


FAST = (BurnWindow("fast_burn", long_s=3600, short_s=300, factor=14.4),)
NOW = 3600.0


def _alert_over(samples, **kw):
    w = RollingWindow(3600, samples)
    return MultiWindowBurnAlert(0.001, FAST, **kw).check(w, NOW)[0]


def _early(n, bad=0):  # n samples in the long window but before the short one (t = 1..n, short is (3300, 3600])
    return [(float(t), 1.0 if t <= bad else 0.0) for t in range(1, n + 1)]


def _late(n, bad=0):  # n samples inside the short window (t = 3500..)
    return [(3500.0 + t, 1.0 if t < bad else 0.0) for t in range(n)]


def test_long_window_alone_does_not_fire():
    # long: 2 bad / 110 = 1.82 % -> burn 18.2 > 14.4; short: 0 / 10 -> burn 0: the problem is over
    check = _alert_over(_early(100, bad=2) + _late(10))
    assert check.long_rate == pytest.approx(2 / 110 / 0.001)
    assert check.short_rate == 0.0
    assert not check.firing


def test_short_window_alone_does_not_fire():
    # long: 1 bad / 1010 -> burn 0.99; short: 1 / 10 -> burn 100: a blip, not a budget threat
    check = _alert_over(_early(1000) + _late(10, bad=1))
    assert check.long_rate == pytest.approx(1 / 1010 / 0.001)
    assert check.short_rate == pytest.approx(100.0)
    assert not check.firing


def test_both_windows_fire():
    # long: 2 / 110 -> 18.2 > 14.4; short: 2 / 10 -> 200 > 14.4
    check = _alert_over(_early(100) + _late(10, bad=2))
    assert check.firing
    assert (check.long_total, check.short_total) == (110, 10)
    assert check.value == pytest.approx(2 / 110 / 0.001)  # min of the two
    assert not _alert_over(_early(100) + _late(10, bad=2), min_events=111).firing  # 110 < 111 requests


def test_factor_must_be_exceeded_not_met():
    # long: 1 bad / 1000 in the window... choose 1 / 250 = 0.4 % = burn 4.0 vs factor 4.0 -> not above
    w = RollingWindow(3600, _early(240) + _late(10, bad=1))
    pair = (BurnWindow("x", 3600, 300, factor=4.0),)
    check = MultiWindowBurnAlert(0.001, pair).check(w, NOW)[0]
    assert check.long_rate == pytest.approx(4.0)
    assert not check.firing


def test_for_objective():
    alert = MultiWindowBurnAlert.for_objective(DEFAULTS["error_rate"])  # 30-day window: workbook pairs
    assert alert.target == 0.001
    assert [(w.name, w.long_s, w.short_s, w.factor) for w in alert.windows] == [
        ("fast_burn", 3600, 300, 14.4),
        ("slow_burn", 21600, 1800, 6.0),
    ]
    assert alert.longest_s == 21600
    with pytest.raises(ValueError):
        MultiWindowBurnAlert.for_objective(DEFAULTS["peak_vram"])  # max has no budget
    # a percentile objective burns on values above its threshold: P99 < 3 s, 1 % budget
    ttft = MultiWindowBurnAlert.for_objective(DEFAULTS["first_token_latency_p99"])
    assert ttft.target == pytest.approx(0.01)
    # windows scaled by 1 h / 30 d = 1/720: fast 1 h -> 5 s and 5 min -> 5/12 s
    assert (ttft.windows[0].long_s, ttft.windows[0].short_s) == (pytest.approx(5.0), pytest.approx(5 / 12))
    w = RollingWindow(ttft.longest_s, [(3599.8, 3.5), (3599.9, 1.0)])  # 1 slow of 2 -> 50 % / 1 % = burn 50
    fast = ttft.check(w, NOW)[0]
    assert fast.short_rate == pytest.approx(50.0)
    assert fast.firing
