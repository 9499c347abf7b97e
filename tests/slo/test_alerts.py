"""Alert state machine: transitions only, hysteresis, hold time, one-shot OOM alerts."""

from __future__ import annotations

import pytest

from trayllm.slo.alerts import AlertStateMachine


def _run(machine, values):
    events = []
    for t, v in enumerate(values):
        ev = machine.update(v, now=float(t))
        if ev is not None:
            events.append(ev)
    return events


def test_hovering_at_the_threshold_does_not_flap():
    m = AlertStateMachine("slo.x", threshold=10.0)  # fire above 10, resolve below 10 * 0.9 = 9
    values = [5, 10, 10.5, 11, 9.5, 10.2, 9.5, 10.4, 9.0, 8.9, 9.5, 10, 10.01, 3]
    #  t:     0   1    2    3    4    5    6     7    8    9   10  11    12   13
    # 10 is not above 10; fire at 10.5 (t=2); 11..9.0 stay inside the band or above: no events (9.0 is not
    # below 9); 8.9 resolves (t=9); 9.5 and 10 do nothing; 10.01 fires again (t=12); 3 resolves (t=13)
    events = _run(m, values)
    assert [(e.state, e.value, e.at) for e in events] == [
        ("firing", 10.5, 2.0),
        ("resolved", 8.9, 9.0),
        ("firing", 10.01, 12.0),
        ("resolved", 3, 13.0),
    ]
    assert all(e.key == "slo.x" and e.threshold == 10.0 for e in events)
    assert m.state == "resolved"


def test_without_margin_the_same_hover_flaps():
    # the control case for the test above: margin 0 resolves at any value below 10
    m = AlertStateMachine("slo.x", threshold=10.0, margin=0.0)
    states = [e.state for e in _run(m, [10.5, 9.5, 10.2, 9.5])]
    assert states == ["firing", "resolved", "firing", "resolved"]


def test_no_repeated_firing_and_none_changes_nothing():
    m = AlertStateMachine("slo.x", threshold=1.0)
    events = _run(m, [2.0, 3.0, None, 5.0, None, None])
    assert [e.state for e in events] == ["firing"]
    assert m.state == "firing"
    assert m.update(None, now=100.0) is None and m.state == "firing"  # no data is not a recovery


def test_hold_time_before_resolving():
    m = AlertStateMachine("slo.x", threshold=10.0, hold_s=60.0)
    assert m.update(20.0, now=0.0).state == "firing"
    assert m.update(5.0, now=10.0) is None  # clear since 10
    assert m.update(9.5, now=40.0) is None  # back in the band: the hold starts over
    assert m.update(5.0, now=50.0) is None  # clear since 50
    assert m.update(5.0, now=109.0) is None  # 59 s < 60 s
    ev = m.update(5.0, now=110.0)  # 60 s clear
    assert (ev.state, ev.at) == ("resolved", 110.0)


def test_injected_clock():
    now = [1000.0]
    m = AlertStateMachine("slo.x", threshold=1.0, clock=lambda: now[0])
    assert m.update(2.0).at == 1000.0
    now[0] = 1005.0
    ev = m.update(0.1)
    assert (ev.state, ev.at) == ("resolved", 1005.0)
    assert "0.1" in ev.message and "0.9" in ev.message  # value and the resolve mark


def test_oom_fires_on_every_occurrence_then_resolves_when_quiet():
    oom = AlertStateMachine("oom", quiet_s=300.0)
    first = oom.fire_once(now=0.0)
    second = oom.fire_once(message="CUDA out of memory in prefill", now=10.0)
    assert (first.state, second.state) == ("firing", "firing")
    assert "occurrence 1" in first.message
    assert second.message == "CUDA out of memory in prefill"
    assert oom.tick(now=309.0) is None  # 299 s since the last one
    resolved = oom.tick(now=310.0)
    assert (resolved.state, resolved.at) == ("resolved", 310.0)
    assert "2 occurrence" in resolved.message
    assert oom.tick(now=1000.0) is None  # resolved once
    again = oom.fire_once(now=2000.0)
    assert again.state == "firing" and "occurrence 1" in again.message


def test_tick_does_not_resolve_a_threshold_alert_and_bad_setups():
    m = AlertStateMachine("slo.x", threshold=1.0)
    m.update(2.0, now=0.0)
    assert m.tick(now=10_000.0) is None
    with pytest.raises(ValueError):
        AlertStateMachine("oom").update(1.0, now=0.0)  # a one-shot alert has no threshold
    with pytest.raises(ValueError):
        AlertStateMachine("x", threshold=0.0)
    with pytest.raises(ValueError):
        AlertStateMachine("x", threshold=1.0, margin=1.0)
