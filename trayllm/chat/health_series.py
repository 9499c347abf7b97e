"""The Health view's data, without Qt: /v1/status samples turned into bounded time series.

Kept apart from ``trayllm.chat.health`` (the widget) so the arithmetic, the restart handling and the
"no data" rule are tested without a display or PySide6. A value the daemon does not know (no VRAM on
CPU, an SLO row without enough samples) is stored as ``None``, drawn as a gap and labelled "no data":
inventing a 0 would look like a healthy reading.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from trayllm.api_status import DaemonStatus

WINDOW_S = 600.0  # what the charts show: the last ten minutes
MAX_SAMPLES = 300  # ten minutes of the window's 2 s polling
NO_DATA = "no data"
NO_VRAM = "CPU: no VRAM"


@dataclass(frozen=True)
class Point:
    """One sample; ``value`` None is a gap (the daemon had no value), never a zero."""

    at: float
    value: float | None


@dataclass
class Series:
    """One bounded time series with its label text and optional threshold line (both in display units)."""

    key: str
    title: str
    unit: str
    fmt: Callable[[float], str]
    threshold: float | None = None
    maxlen: int = MAX_SAMPLES
    points: deque[Point] = field(init=False)
    empty_text: str = NO_DATA  # what the label says while the latest value is None

    def __post_init__(self) -> None:
        self.points = deque(maxlen=self.maxlen)

    def append(self, at: float, value: float | None) -> None:
        self.points.append(Point(at, value))

    @property
    def latest(self) -> float | None:
        """The newest value, None when there is none yet or the newest sample had no data."""
        return self.points[-1].value if self.points else None

    def label(self) -> str:
        """The text next to the chart, e.g. "P99 first token 0.21 s" or "VRAM no data"."""
        value = self.latest
        if value is None:
            return self.empty_text if self.empty_text != NO_DATA else f"{self.title} {NO_DATA}"
        return f"{self.title} {self.fmt(value)} {self.unit}"


def _fixed(digits: int) -> Callable[[float], str]:
    return lambda value: f"{value:.{digits}f}"


class HealthSeries:
    """Turns successive ``DaemonStatus`` samples into the Health view's series, without Qt.

    Decode tokens/s is the growth of the cumulative ``requests.tokens_out`` divided by the time between
    two samples. A counter that shrinks (or a new ``boot_id``) means the daemon restarted: that sample
    is a gap and the rate starts again from the new counter, so the chart never shows a negative rate.
    """

    def __init__(self, maxlen: int = MAX_SAMPLES) -> None:
        self.first_token_p99 = Series(
            "first_token_p99", "P99 first token", "s", _fixed(2), threshold=3.0, maxlen=maxlen
        )
        self.tokens_per_s = Series("tokens_per_s", "Decode", "tok/s", _fixed(1), maxlen=maxlen)
        self.vram = Series("vram", "VRAM", "%", _fixed(0), threshold=80.0, maxlen=maxlen)
        self.error_rate = Series("error_rate", "Errors", "%", _fixed(2), threshold=0.1, maxlen=maxlen)
        self._last_counter: tuple[float, int, str | None] | None = None  # (at, tokens_out, boot_id)

    @property
    def all(self) -> list[Series]:
        """The series in display order."""
        return [self.first_token_p99, self.tokens_per_s, self.vram, self.error_rate]

    def add(self, status: DaemonStatus, at: float) -> None:
        """Append one polled status taken at Unix time ``at`` to every series."""
        rows = {row.objective: row for row in status.slo}
        ttft = rows.get("first_token_latency_p99")
        if ttft is not None:
            self.first_token_p99.threshold = ttft.threshold
        self.first_token_p99.append(at, ttft.value if ttft is not None else None)

        errors = rows.get("error_rate")
        if errors is not None:
            self.error_rate.threshold = errors.threshold * 100.0
        self.error_rate.append(at, errors.value * 100.0 if errors is not None and errors.value is not None else None)

        vram_row = rows.get("peak_vram")
        if vram_row is not None:
            self.vram.threshold = vram_row.threshold * 100.0
        memory = status.vram
        self.vram.empty_text = NO_VRAM if memory is None else NO_DATA
        self.vram.append(
            at,
            memory.used_bytes / memory.total_bytes * 100.0 if memory is not None and memory.total_bytes > 0 else None,
        )

        self.tokens_per_s.append(at, self._rate(status, at))

    def _rate(self, status: DaemonStatus, at: float) -> float | None:
        tokens = status.requests.tokens_out
        previous, self._last_counter = self._last_counter, (at, tokens, status.boot_id)
        if previous is None:
            return None
        prev_at, prev_tokens, prev_boot = previous
        restarted = tokens < prev_tokens or (prev_boot is not None and status.boot_id not in (None, prev_boot))
        if restarted or at <= prev_at:
            return None
        return (tokens - prev_tokens) / (at - prev_at)
