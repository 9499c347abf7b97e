"""One SLO report from any iterable of request records, so ``trayllm slo --from FILE`` and the live daemon agree.

``slo_report`` makes one pass over record dicts (the nested documents ``telemetry.reader.iter_records``
yields, or flat dotted ones), fills one ``RollingWindow`` per objective and judges each at ``now``.

A record's sample is stamped with the time the request *ended* (``@timestamp``, its arrival, plus
``event.duration``): that is when the daemon learns the outcome and writes the record, so the report from
the file and the live monitor put a request in the same window. Records without a readable ``@timestamp``
are skipped.

Budget left: for objectives with an error budget (ratio; percentile, whose budget is the share allowed
above the threshold, 1 % for a P99) it is ``burn.budget_remaining`` over the objective's window; ``None``
for ``max`` objectives and while the window holds fewer than ``min_samples`` samples.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from trayllm import api_status
from trayllm.slo.burn import budget_remaining
from trayllm.slo.objectives import Objective, field_value, state_of, statistic, window_values
from trayllm.slo.window import RollingWindow


@dataclass(frozen=True)
class ReportRow:
    """One objective judged at one moment."""

    objective: str
    window_s: float
    value: float | None
    threshold: float
    state: str  # ok | breach | insufficient
    budget_left: float | None  # share of the error budget left (negative: overspent); None where n/a
    samples: int
    unit: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_wire(row: ReportRow) -> api_status.SloRow:
    """The row as GET /v1/slo and /v1/status carry it: the one conversion between the two row types, which
    have the same fields (tests/slo/test_sources.py fails when one gains a field the other lacks)."""
    return api_status.SloRow(**row.to_dict())


def parse_time(value: Any) -> float | None:
    """Unix seconds from an ISO 8601 string (``Z`` or an offset; none means UTC); None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def record_end_time(record: Mapping[str, Any]) -> float | None:
    """Unix seconds when the request ended: ``event.end``, or (records written before it existed)
    ``@timestamp`` + ``event.duration`` (ns; 0 when absent)."""
    end = parse_time(field_value(record, "event.end"))
    if end is not None:
        return end
    arrival = parse_time(record.get("@timestamp"))
    if arrival is None:
        return None
    duration = field_value(record, "event.duration")
    ok = isinstance(duration, (int, float)) and not isinstance(duration, bool) and math.isfinite(duration)
    return arrival + (duration / 1e9 if ok and duration > 0 else 0.0)


def add_record(
    objectives: Sequence[Objective], windows: Mapping[str, RollingWindow], record: Mapping[str, Any]
) -> None:
    """Add one record's samples to ``windows`` (by objective name), stamped with its end time."""
    at = record_end_time(record)
    if at is None:
        return
    for o in objectives:
        value = o.from_record(record)
        if value is not None:
            windows[o.name].add(at, value)


def fill_windows(objectives: Sequence[Objective], records: Iterable[Mapping[str, Any]]) -> dict[str, RollingWindow]:
    """One ``RollingWindow`` per objective (by name), filled from ``records`` in one pass."""
    windows = {o.name: RollingWindow(o.window_s) for o in objectives}
    for record in records:
        add_record(objectives, windows, record)
    return windows


def make_row(objective: Objective, value: float | None, samples: int, bad: int) -> ReportRow:
    """One report row from a window's statistic, its sample count and how many samples were bad: the one
    judgement both the local windows and Elasticsearch's aggregations go through."""
    state = state_of(objective, value, samples)
    target = objective.budget_fraction
    budget = budget_remaining(bad, samples, target) if target is not None and state != "insufficient" else None
    return ReportRow(
        objective.name, objective.window_s, value, objective.threshold, state, budget, samples, objective.unit
    )


def judge(objective: Objective, window: RollingWindow, now: float) -> ReportRow:
    """One objective's report row from its window at ``now``."""
    values = window_values(objective, window, now)
    return make_row(objective, statistic(objective, values), len(values), sum(1 for v in values if objective.is_bad(v)))


def slo_report(objectives: Sequence[Objective], records: Iterable[Mapping[str, Any]], now: float) -> list[ReportRow]:
    """Every objective judged at ``now`` (Unix seconds) over ``records``, in the order of ``objectives``."""
    windows = fill_windows(objectives, records)
    return [judge(o, windows[o.name], now) for o in objectives]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ratio":
        return f"{value * 100:.3g}%"
    if unit:
        return f"{value:.3g} {unit}"
    return f"{value:.4g}"


def _fmt_window(seconds: float) -> str:
    for size, name in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {name}"
    return f"{seconds:g} s"


def to_text(rows: Sequence[ReportRow | api_status.SloRow]) -> str:
    """An aligned table, one line per objective."""
    header = ("objective", "window", "value", "threshold", "state", "budget left", "samples")
    lines = [header] + [
        (
            r.objective,
            _fmt_window(r.window_s),
            _fmt(r.value, r.unit),
            _fmt(r.threshold, r.unit),
            r.state,
            _fmt(r.budget_left, "ratio"),
            str(r.samples),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def to_json(rows: Sequence[ReportRow]) -> str:
    """The rows as a JSON array of objects (``ReportRow`` field names)."""
    return json.dumps([r.to_dict() for r in rows])
