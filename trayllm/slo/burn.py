"""Error budgets and multiwindow burn-rate alerts, so a breach is caught early without paging on every blip.

An objective that allows a fraction ``target`` of requests to be bad (0.1 % errors; 1 % slower than the
P99 threshold) has an error budget of ``target × total`` bad requests. The *burn rate* is how fast that
budget goes: the observed bad fraction divided by ``target`` (1.0 spends exactly the budget over the SLO
window). Following the Google SRE workbook ("Alerting on SLOs", multiwindow, multi-burn-rate alerts), an
alert fires only when BOTH a long window and a short window burn faster than a factor: the long window
makes it significant, the short one makes it reset quickly once the problem stops. The workbook's pairs
for a 30-day SLO are fast burn 1 h / 5 min at 14.4× (2 % of the budget in an hour) and slow burn
6 h / 30 min at 6× (5 % in six hours); ``default_burn_windows`` scales the windows to other SLO periods
and keeps the factors, so each pair still means the same share of the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from trayllm.slo.objectives import DAY, HOUR, Objective
from trayllm.slo.window import RollingWindow

WORKBOOK_SLO_PERIOD_S = 30 * DAY


def _check(bad: int, total: int, target: float) -> None:
    if not 0 < target <= 1:
        raise ValueError(f"target must be within (0, 1], got {target}")
    if bad < 0 or total < 0 or bad > total:
        raise ValueError(f"need 0 <= bad <= total, got bad={bad} total={total}")


def burn_rate(bad: int, total: int, target: float) -> float:
    """``(bad / total) / target``: 1.0 spends the budget exactly by the end of the SLO window. 0.0 with no
    requests (nothing burned)."""
    _check(bad, total, target)
    return 0.0 if total == 0 else (bad / total) / target


def budget_remaining(bad: int, total: int, target: float) -> float:
    """The share of the error budget left: ``1 - bad / (target × total)``; negative once overspent
    (3 bad of 1000 at 0.1 % is -2.0, i.e. -200 %). 1.0 with no requests."""
    _check(bad, total, target)
    return 1.0 if total == 0 else 1 - bad / (target * total)


@dataclass(frozen=True)
class BurnWindow:
    """One long/short window pair and the burn-rate factor both must exceed."""

    name: str
    long_s: float
    short_s: float
    factor: float

    def __post_init__(self) -> None:
        if not 0 < self.short_s <= self.long_s or self.factor <= 0:
            raise ValueError(f"{self.name}: need 0 < short_s <= long_s and factor > 0")


def default_burn_windows(slo_window_s: float = WORKBOOK_SLO_PERIOD_S) -> tuple[BurnWindow, BurnWindow]:
    """The workbook's fast and slow pairs, windows scaled by ``slo_window_s / 30 days`` (factors unchanged)."""
    k = slo_window_s / WORKBOOK_SLO_PERIOD_S
    return (
        BurnWindow("fast_burn", long_s=1 * HOUR * k, short_s=300 * k, factor=14.4),
        BurnWindow("slow_burn", long_s=6 * HOUR * k, short_s=1800 * k, factor=6.0),
    )


@dataclass(frozen=True)
class BurnCheck:
    """One burn-window pair judged at one moment."""

    name: str
    factor: float
    long_rate: float
    short_rate: float
    long_total: int
    short_total: int
    firing: bool  # both rates above the factor (and enough requests in the long window)

    @property
    def value(self) -> float:
        """The burn rate both windows exceed: feed it to an ``AlertStateMachine`` with threshold ``factor``,
        which then fires when both windows burn too fast and resolves when either calms down."""
        return min(self.long_rate, self.short_rate)


class MultiWindowBurnAlert:
    """Judges the fast and slow burn pairs over one ``RollingWindow`` of samples."""

    def __init__(
        self,
        target: float,
        windows: tuple[BurnWindow, ...] | None = None,
        *,
        min_events: int = 1,
        is_bad: Callable[[float], bool] = lambda v: v > 0,
    ) -> None:
        if not 0 < target <= 1:
            raise ValueError(f"target must be within (0, 1], got {target}")
        self.target = target
        self.windows = default_burn_windows() if windows is None else windows
        self.min_events = min_events
        self.is_bad = is_bad

    @classmethod
    def for_objective(cls, objective: Objective, *, min_events: int = 1) -> MultiWindowBurnAlert:
        """Burn alerts on an objective with a budget (ratio or percentile), windows scaled to its window."""
        target = objective.budget_fraction
        if target is None:
            raise ValueError(f"{objective.name}: a {objective.kind} objective has no error budget")
        return cls(target, default_burn_windows(objective.window_s), min_events=min_events, is_bad=objective.is_bad)

    @property
    def longest_s(self) -> float:
        """The span a ``RollingWindow`` must cover for ``check``."""
        return max(w.long_s for w in self.windows)

    def check(self, window: RollingWindow, now: float) -> list[BurnCheck]:
        """Every pair judged over ``window`` at ``now`` (the window must cover ``longest_s``)."""
        out = []
        for w in self.windows:
            long_values = window.values(now, w.long_s)
            short_values = window.values(now, w.short_s)
            long_bad = sum(1 for v in long_values if self.is_bad(v))
            short_bad = sum(1 for v in short_values if self.is_bad(v))
            long_rate = burn_rate(long_bad, len(long_values), self.target)
            short_rate = burn_rate(short_bad, len(short_values), self.target)
            firing = len(long_values) >= self.min_events and long_rate > w.factor and short_rate > w.factor
            out.append(BurnCheck(w.name, w.factor, long_rate, short_rate, len(long_values), len(short_values), firing))
        return out
