"""RollingWindow: a sample is in the window at ``now`` when now - span < at <= now."""

from __future__ import annotations

import pytest

from trayllm.slo.window import RollingWindow


def test_eviction_at_the_boundary():
    w = RollingWindow(60, [(0, 1.0), (10, 2.0), (30, 3.0), (60, 4.0)])
    # now=60: (0, 60] -> the sample at 0 is exactly 60 s old: out
    assert w.values(60) == [2.0, 3.0, 4.0]
    assert len(w) == 3  # and evicted, not just filtered
    # now=70: (10, 70] -> the sample at 10 leaves
    assert w.count(70) == 2
    assert w.values(70) == [3.0, 4.0]
    # now=69.999: the sample at 10 is still in (10 > 9.999)
    w2 = RollingWindow(60, [(10, 2.0)])
    assert w2.count(69.999) == 1


def test_future_samples_wait_and_late_samples_are_ordered():
    w = RollingWindow(100)
    w.add(50, 5.0)
    w.add(10, 1.0)  # a request that ended before one already added
    w.add(30, 3.0)
    w.add(120, 9.0)  # stamped after `now` below
    assert w.values(100) == [1.0, 3.0, 5.0]  # (0, 100]: 120 not yet
    assert w.values(120) == [3.0, 5.0, 9.0]  # (20, 120]


def test_sub_span_count_and_ratio():
    w = RollingWindow(3600)
    w.extend([(100, 1.0), (3000, 0.0), (3400, 1.0), (3500, 0.0)])
    assert w.count(3600, span_s=300) == 2  # (3300, 3600]: 3400, 3500
    assert w.ratio(3600, span_s=300) == 0.5  # 1 of 2 non-zero
    assert w.ratio(3600) == 0.5  # whole hour: 2 of 4
    assert w.count_where(3600, lambda v: v == 0.0) == 2
    assert w.ratio(10_000) is None  # all evicted
    with pytest.raises(ValueError):
        w.values(3600, span_s=7200)  # longer than what the window keeps
    with pytest.raises(ValueError):
        RollingWindow(0)
