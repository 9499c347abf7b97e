"""The daemon's objectives judged continuously over its own records, turned into alert transitions.

``SloMonitor`` keeps one ``RollingWindow`` per objective, fed one record at a time (``observe``) and
refilled from the record file at start (``refill``), and one ``AlertStateMachine`` per alert key:

- ``slo.<objective>`` for a percentile or max objective (first-token P99, peak VRAM): the judged value
  against the threshold, with hysteresis; nothing changes while the window holds too few samples.
- ``burn.<objective>.fast_burn`` / ``.slow_burn`` for a ratio objective (error rate): the SRE workbook's
  multiwindow burn rate, fed as the smaller of the long and short window's rate against the pair's factor.
- ``oom``: one "firing" transition per out-of-memory, straight from the engine (``oom``), resolved after
  a quiet period. It is not read from records, because a retried OOM leaves a successful record.

A sample is stamped with its record's end time (``report.record_end_time``), never the time it was
observed, so the live report and ``trayllm slo --from FILE`` put every record in the same window and
agree (``report`` uses the very ``judge`` the offline report uses). The monitor reads no clock except
through ``clock``; every method takes ``now`` for tests. It is thread-safe: records arrive on the
inference and HTTP threads, evaluation runs on its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from trayllm.slo.alerts import AlertEvent, AlertState, AlertStateMachine
from trayllm.slo.burn import MultiWindowBurnAlert
from trayllm.slo.objectives import Objective, evaluate
from trayllm.slo.report import ReportRow, add_record, judge
from trayllm.slo.window import RollingWindow

OOM_KEY = "oom"
ENGINE_UNREACHABLE = "engine.unreachable"  # + ".<engine name>": a remote engine's upstream is down


def severity_of(key: str) -> Literal["critical", "warning"]:
    """critical for OOM (the guide: an alert on every occurrence) and an unreachable engine (nothing it serves
    can succeed), warning for objectives."""
    return "critical" if key == OOM_KEY or key.startswith(ENGINE_UNREACHABLE + ".") else "warning"


class SloMonitor:
    """Windows, alert machines and the report for one set of objectives."""

    def __init__(
        self,
        objectives: Sequence[Objective],
        *,
        margin: float = 0.1,
        hold_s: float = 0.0,
        oom_quiet_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.objectives = tuple(objectives)
        self.clock = clock
        self._lock = threading.Lock()
        self._windows = {o.name: RollingWindow(o.window_s) for o in self.objectives}
        self._burns: dict[str, MultiWindowBurnAlert] = {}
        self._machines: dict[str, AlertStateMachine] = {}
        for o in self.objectives:
            if o.kind == "ratio":
                burn = MultiWindowBurnAlert.for_objective(o, min_events=o.min_samples)
                self._burns[o.name] = burn
                for w in burn.windows:
                    key = f"burn.{o.name}.{w.name}"
                    self._machines[key] = AlertStateMachine(key, w.factor, margin=margin, hold_s=hold_s, clock=clock)
            else:
                key = f"slo.{o.name}"
                self._machines[key] = AlertStateMachine(key, o.threshold, margin=margin, hold_s=hold_s, clock=clock)
        self._oom = AlertStateMachine(OOM_KEY, quiet_s=oom_quiet_s, clock=clock)
        self._machines[OOM_KEY] = self._oom

    @property
    def keys(self) -> list[str]:
        """Every alert key this monitor can raise."""
        return list(self._machines)

    def observe(self, record: Mapping[str, Any]) -> None:
        """One finished request's record (nested or dotted)."""
        with self._lock:
            add_record(self.objectives, self._windows, record)

    def refill(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Many records (the record file at start); returns how many were read."""
        n = 0
        for record in records:
            self.observe(record)
            n += 1
        return n

    def restore(self, key: str, state: AlertState, now: float | None = None) -> None:
        """Start an alert in the state it was left in (from the alert records), so a restart does not
        announce again what was already announced. Unknown keys (an objective removed since) are ignored."""
        machine = self._machines.get(key)
        if machine is not None and state == "firing":
            with self._lock:
                machine.restore_firing(self.clock() if now is None else now)

    def evaluate(self, now: float | None = None) -> list[AlertEvent]:
        """Judge every objective at ``now``; the transitions that caused (usually none)."""
        at = self.clock() if now is None else now
        events: list[AlertEvent | None] = []
        with self._lock:
            for o in self.objectives:
                window = self._windows[o.name]
                burn = self._burns.get(o.name)
                if burn is None:
                    ev = evaluate(o, window, at)
                    value = None if ev.state_hint == "insufficient" else ev.value
                    events.append(self._machines[f"slo.{o.name}"].update(value, at))
                    continue
                for check in burn.check(window, at):
                    value = check.value if check.long_total >= burn.min_events else None
                    events.append(self._machines[f"burn.{o.name}.{check.name}"].update(value, at))
            events.append(self._oom.tick(at))
        return [e for e in events if e is not None]

    def oom(self, message: str, now: float | None = None) -> AlertEvent:
        """An out-of-memory just happened: always a "firing" transition."""
        with self._lock:
            return self._oom.fire_once(None, message, now)

    def states(self) -> dict[str, AlertState]:
        """Every alert key's current state."""
        with self._lock:
            return {k: m.state for k, m in self._machines.items()}

    def report(self, now: float | None = None) -> list[ReportRow]:
        """The SLO report at ``now``: the same rows ``report.slo_report`` gives for the same records."""
        at = self.clock() if now is None else now
        with self._lock:
            return [judge(o, self._windows[o.name], at) for o in self.objectives]
