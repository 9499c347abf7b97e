"""Alert state per alert key, so a notification means something changed, not that a check ran again.

``AlertStateMachine`` turns a stream of measured values into transitions ``ok → firing → resolved`` (and
``resolved → firing`` again), emitting an ``AlertEvent`` only on a transition: no repeated "firing" while
firing. Hysteresis keeps a value hovering at the threshold from flapping: it fires when the value goes
*above* ``threshold``, and resolves only when the value falls *below* ``threshold × (1 - margin)`` (default
margin 10 %) and has stayed there for ``hold_s`` seconds (default 0: at once). A value in the band between
the two marks changes nothing, and restarts the hold. ``None`` (not enough data) changes nothing either:
an alert is not resolved for lack of evidence.

OOM is different: every occurrence is an alert (deployment guide). ``fire_once`` emits a "firing" event
for each occurrence, even while already firing, and ``tick`` resolves it once ``quiet_s`` seconds have
passed without another.

The clock is injectable (``clock``, default ``time.time``, the records' wall clock) and every method also
takes an explicit ``now``, so tests never sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

AlertState = Literal["ok", "firing", "resolved"]


@dataclass(frozen=True)
class AlertEvent:
    """One transition of one alert (what goes to /v1/events, the tray and the ``trayllm.alerts`` stream)."""

    key: str
    state: AlertState
    value: float | None
    threshold: float | None
    at: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AlertStateMachine:
    """The state of one alert key (``slo.first_token_latency_p99``, ``burn.error_rate.fast_burn``, ``oom``)."""

    def __init__(
        self,
        key: str,
        threshold: float | None = None,
        *,
        margin: float = 0.1,
        hold_s: float = 0.0,
        quiet_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if threshold is not None and threshold <= 0:
            raise ValueError(f"{key}: threshold must be positive (hysteresis scales it), got {threshold}")
        if not 0 <= margin < 1 or hold_s < 0 or quiet_s < 0:
            raise ValueError(f"{key}: need 0 <= margin < 1, hold_s >= 0 and quiet_s >= 0")
        self.key = key
        self.threshold = threshold
        self.margin = margin
        self.hold_s = hold_s
        self.quiet_s = quiet_s
        self.clock = clock
        self._state: AlertState = "ok"
        self._clear_since: float | None = None  # firing, and below the resolve mark since then
        self._last_once: float | None = None  # one-shot episode: the last occurrence
        self._occurrences = 0  # one-shot occurrences in the current episode

    @property
    def state(self) -> AlertState:
        return self._state

    @property
    def resolve_below(self) -> float:
        """The value must fall below this to resolve: ``threshold × (1 - margin)``."""
        if self.threshold is None:
            raise ValueError(f"{self.key}: no threshold (a one-shot alert)")
        return self.threshold * (1 - self.margin)

    def _event(self, state: AlertState, value: float | None, at: float, message: str) -> AlertEvent:
        self._state = state
        return AlertEvent(self.key, state, value, self.threshold, at, message)

    def update(self, value: float | None, now: float | None = None) -> AlertEvent | None:
        """Feed one measurement; the transition it causes, if any."""
        at = self.clock() if now is None else now
        low = self.resolve_below
        assert self.threshold is not None
        if value is None:
            return None
        if self._state != "firing":
            if value > self.threshold:
                self._clear_since = None
                return self._event("firing", value, at, f"{self.key} firing: {value:.4g} > {self.threshold:.4g}")
            return None
        if value >= low:
            self._clear_since = None  # back in (or still in) the hysteresis band: the hold starts over
            return None
        if self._clear_since is None:
            self._clear_since = at
        if at - self._clear_since >= self.hold_s:
            self._clear_since = None
            return self._event("resolved", value, at, f"{self.key} resolved: {value:.4g} < {low:.4g}")
        return None

    def fire_once(self, value: float | None = None, message: str | None = None, now: float | None = None) -> AlertEvent:
        """One occurrence of a one-shot alert (OOM): always a "firing" event; ``tick`` resolves it later."""
        at = self.clock() if now is None else now
        self._last_once = at
        self._occurrences += 1
        text = message or f"{self.key} firing: occurrence {self._occurrences} of this episode"
        return self._event("firing", value, at, text)

    def restore_firing(self, now: float) -> None:
        """Take up a firing state silently (after a restart): no event, so nobody is told twice. A one-shot
        alert restored this way resolves ``quiet_s`` after ``now``."""
        self._state = "firing"
        self._clear_since = None
        if self.threshold is None:
            self._last_once = now

    def tick(self, now: float | None = None) -> AlertEvent | None:
        """Resolve a one-shot alert once ``quiet_s`` has passed since its last occurrence."""
        at = self.clock() if now is None else now
        if self._state != "firing" or self._last_once is None or at - self._last_once < self.quiet_s:
            return None
        n, self._occurrences, self._last_once = self._occurrences, 0, None
        return self._event(
            "resolved", None, at, f"{self.key} resolved: none for {self.quiet_s:g} s after {n} occurrence(s)"
        )
