"""What the daemon promises, as data: each objective names a record field, a statistic and a limit.

An ``Objective`` says how to read one number out of a request record (``from_record``), which records
count at all, and how to judge a window of those numbers (``evaluate``). Keeping it declarative lets the
live daemon and ``trayllm slo --from FILE`` judge the same records the same way, and lets users configure
their own objectives without code.

Kinds:

- ``percentile``: the nearest-rank ``percentile`` of the field's values (first-token latency P99).
- ``max``: the largest value (peak VRAM share of the device).
- ``ratio``: the share of counted requests that were bad (error rate). Each counted record is a sample
  of 1.0 (bad) or 0.0 (good); records that are not the daemon's responsibility are not counted at all.

Which failures burn the error budget is each error class's ``burns_budget`` (trayllm.errors, the one table
of error kinds), gathered here by record ``error.type`` into ``CLIENT_FAULT`` and ``SERVER_FAULT``. A request
the client got wrong or gave up on is not a failure of the service, so its types (``invalid_request``,
``rate_limited``, ``cancelled``, ...) are left out of both numerator and denominator (the SRE workbook's
"valid events"), and so is ``paused`` (the user chose to stop serving): a client sending garbage neither
burns the budget nor dilutes it. The daemon's failures (``oom``, ``timeout``, ``queue_full``, ...) burn it,
and so does an ``error.type`` in neither set (one from a newer daemon's records).

Latency objectives count every record that has the field: a request that timed out before its first
token has no ``llm.ttft.ns`` and shows up in the error rate instead.

Thresholds are the most an objective allows: it is breached when the value is *above* the threshold
("P99 < 3 s" is read as "P99 ≤ 3 s"; exactly 3 s is not a breach).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from trayllm.config import Settings
from trayllm.errors import record_error_types
from trayllm.slo.percentile import percentile
from trayllm.slo.window import RollingWindow

Kind = Literal["percentile", "max", "ratio"]
State = Literal["ok", "breach", "insufficient"]
KINDS: tuple[str, ...] = ("percentile", "max", "ratio")

CLIENT_FAULT: frozenset[str] = frozenset(kind for kind, burns in record_error_types().items() if not burns)
"""``error.type`` values that are the client's doing (or the user's choice: ``paused``): not counted by the
error-rate objective."""

SERVER_FAULT: frozenset[str] = frozenset(kind for kind, burns in record_error_types().items() if burns)
"""``error.type`` values that are the daemon's failure: they burn the error budget."""

HOUR = 3600.0
DAY = 24 * HOUR


def field_value(record: Mapping[str, Any], path: str) -> Any:
    """The value at dotted ``path`` in a nested record (``llm.ttft.ns`` → ``record["llm"]["ttft"]["ns"]``);
    a flat record holding the dotted key itself is read too. ``None`` when absent."""
    if path in record:
        return record[path]
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


@dataclass(frozen=True)
class Objective:
    """One service-level objective over request records."""

    name: str
    kind: Kind
    field: str  # dotted record path: llm.ttft.ns, llm.vram.peak.pct, error.type
    threshold: float  # the most allowed, in the objective's unit (after ``scale``)
    window_s: float
    min_samples: int = 1  # below this many samples in the window the objective is "insufficient"
    percentile: float | None = None  # kind "percentile" only: 0..100
    scale: float = 1.0  # raw field value × scale = value in the objective's unit (ns → s: 1e-9)
    unit: str = ""  # "s", "ratio" (shown as a percentage) or "" for a plain number
    description: str = ""
    excluded: frozenset[str] = CLIENT_FAULT  # kind "ratio": field values not counted at all

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if (self.kind == "percentile") != (self.percentile is not None):
            raise ValueError(f"{self.name}: percentile is set for kind 'percentile', and only for it")
        if self.percentile is not None and not 0 < self.percentile <= 100:
            raise ValueError(f"{self.name}: percentile must be within (0, 100], got {self.percentile}")
        if self.window_s <= 0 or self.min_samples < 1:
            raise ValueError(f"{self.name}: window_s must be positive and min_samples at least 1")
        if not math.isfinite(self.threshold) or self.threshold < 0:
            raise ValueError(f"{self.name}: threshold must be a finite number ≥ 0, got {self.threshold}")

    @property
    def budget_fraction(self) -> float | None:
        """The share of requests allowed to be bad, where the objective has an error budget: the threshold
        of a ratio, ``1 - p/100`` of a percentile (P99 lets 1 % be slower than the threshold); None for max."""
        if self.kind == "ratio":
            return self.threshold
        if self.kind == "percentile":
            assert self.percentile is not None
            return 1 - self.percentile / 100
        return None

    def from_record(self, record: Mapping[str, Any]) -> float | None:
        """This objective's sample from one record, or ``None`` when the record does not count.

        ``percentile``/``max``: the field's number × ``scale`` (absent or not a number: not counted).
        ``ratio``: 1.0 when the record's field (``error.type``) is set and not in ``excluded``, 0.0 when it
        is absent (success), ``None`` when it is in ``excluded`` (the client's fault or choice).
        """
        raw = field_value(record, self.field)
        if self.kind == "ratio":
            if raw is None:
                return 0.0
            return None if raw in self.excluded else 1.0
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            return None
        return raw * self.scale

    def is_bad(self, value: float) -> bool:
        """Whether one sample counts against the budget: bad marker (ratio) or above the threshold."""
        return value > 0 if self.kind == "ratio" else value > self.threshold


@dataclass(frozen=True)
class Evaluation:
    """An objective judged over a window at one moment."""

    value: float | None  # None when there were no samples
    samples: int
    state_hint: State  # "insufficient" below min_samples (the value is still given when there is one)


def statistic(objective: Objective, values: list[float]) -> float | None:
    """The objective's statistic over ``values`` (None for none)."""
    if not values:
        return None
    if objective.kind == "percentile":
        assert objective.percentile is not None
        return percentile(values, objective.percentile)
    if objective.kind == "max":
        return max(values)
    return sum(1 for v in values if v > 0) / len(values)


def state_of(objective: Objective, value: float | None, samples: int) -> State:
    """``insufficient`` while fewer than ``min_samples`` samples count (a P99 of 5 requests is just the
    slowest one); otherwise ``breach`` when the value is above the threshold, else ``ok``. The one rule the
    live monitor, the offline report and the Elasticsearch report all judge by."""
    if samples < objective.min_samples or value is None:
        return "insufficient"
    return "breach" if value > objective.threshold else "ok"


def window_values(objective: Objective, window: RollingWindow, now: float) -> list[float]:
    """The samples of ``window`` inside the objective's own window at ``now``."""
    return window.values(now, min(objective.window_s, window.duration_s))


def evaluate(objective: Objective, window: RollingWindow, now: float) -> Evaluation:
    """Judge ``objective`` over the last ``objective.window_s`` seconds of ``window`` at ``now``."""
    values = window_values(objective, window, now)
    value = statistic(objective, values)
    return Evaluation(value, len(values), state_of(objective, value, len(values)))


DEFAULT_OBJECTIVES: tuple[Objective, ...] = (
    Objective(
        name="first_token_latency_p99",
        kind="percentile",
        field="llm.ttft.ns",
        percentile=99,
        threshold=3.0,
        scale=1e-9,
        unit="s",
        window_s=HOUR,
        min_samples=100,
        description="first-token latency P99 < 3 s over the last hour (at least 100 requests: below that "
        "the nearest-rank P99 is the single slowest request)",
    ),
    Objective(
        name="peak_vram",
        kind="max",
        field="llm.vram.peak.pct",
        threshold=0.8,
        unit="ratio",
        window_s=300.0,
        min_samples=1,
        description="peak VRAM < 80 % of the device over the last 5 minutes (CUDA only: no samples on CPU)",
    ),
    Objective(
        name="error_rate",
        kind="ratio",
        field="error.type",
        threshold=0.001,
        unit="ratio",
        window_s=30 * DAY,
        min_samples=100,
        description="server-side error rate < 0.1 % over 30 days, as an error budget with burn-rate alerts",
    ),
)
"""The deployment guide's defaults. OOM is not an objective but an alert on every occurrence
(``alerts.AlertStateMachine.fire_once``)."""


def configured_objectives(settings: Settings) -> tuple[Objective, ...]:
    """``DEFAULT_OBJECTIVES`` with the thresholds, windows and minimum samples the user configured."""
    ttft, vram, errors = DEFAULT_OBJECTIVES
    return (
        replace(
            ttft,
            threshold=settings.slo_ttft_p99_s,
            window_s=settings.slo_ttft_window_s,
            min_samples=settings.slo_min_samples,
            description=f"first-token latency P99 < {settings.slo_ttft_p99_s:g} s",
        ),
        replace(
            vram,
            threshold=settings.vram_limit,
            window_s=settings.slo_vram_window_s,
            description=f"peak VRAM < {settings.vram_limit:.0%} of the device (CUDA only)",
        ),
        replace(
            errors,
            threshold=settings.slo_error_rate,
            window_s=settings.slo_error_window_days * DAY,
            min_samples=settings.slo_min_samples,
            description=f"server-side error rate < {settings.slo_error_rate:.2%}, as an error budget",
        ),
    )
