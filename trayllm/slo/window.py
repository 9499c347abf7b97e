"""A rolling time window of samples, because every SLO is "over the last N seconds", not "since start".

``RollingWindow`` holds ``(timestamp, value)`` pairs for ``duration_s`` seconds. Timestamps are plain
floats on whatever clock the caller uses (the daemon and ``trayllm slo`` use Unix seconds from the
records), and every query takes ``now`` explicitly, so nothing here reads a clock and tests need no
sleeping. The window is meant to be refilled from the record file at startup (``extend``) and then fed
one sample per finished request (``add``).

Boundaries: a sample is inside the window at ``now`` when ``now - span < at <= now``; a sample exactly
``span`` seconds old is out, and a sample stamped after ``now`` (clock stepped back) is not counted yet.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterable


class RollingWindow:
    """Samples of one quantity over the last ``duration_s`` seconds, kept in timestamp order."""

    def __init__(self, duration_s: float, samples: Iterable[tuple[float, float]] = ()) -> None:
        if duration_s <= 0:
            raise ValueError(f"duration_s must be positive, got {duration_s}")
        self.duration_s = float(duration_s)
        self._samples: deque[tuple[float, float]] = deque()
        self.extend(samples)

    def add(self, at: float, value: float) -> None:
        """Add one sample. In-order appends are O(1); a late sample is inserted in place."""
        item = (float(at), float(value))
        if not self._samples or item[0] >= self._samples[-1][0]:
            self._samples.append(item)
        else:  # records end out of arrival order (a long request finishes after a short later one)
            self._samples.insert(bisect.bisect_right(self._samples, item[0], key=lambda s: s[0]), item)

    def extend(self, samples: Iterable[tuple[float, float]]) -> None:
        """Add many samples (e.g. from the record file at startup), in any order."""
        for at, value in samples:
            self.add(at, value)

    def evict(self, now: float) -> int:
        """Drop samples that have left the window (``at <= now - duration_s``); returns how many."""
        cutoff = now - self.duration_s
        dropped = 0
        while self._samples and self._samples[0][0] <= cutoff:
            self._samples.popleft()
            dropped += 1
        return dropped

    def _span(self, span_s: float | None) -> float:
        span = self.duration_s if span_s is None else float(span_s)
        if not 0 < span <= self.duration_s:
            raise ValueError(f"span_s must be within (0, {self.duration_s}], got {span_s}")
        return span

    def samples(self, now: float, span_s: float | None = None) -> list[tuple[float, float]]:
        """The ``(at, value)`` pairs with ``now - span < at <= now`` (span defaults to the whole window).

        Evicts what has left the whole window first; a shorter ``span_s`` (the short window of a burn-rate
        pair) reads a suffix of the same samples.
        """
        self.evict(now)
        start = now - self._span(span_s)
        lo = bisect.bisect_right(self._samples, start, key=lambda s: s[0])
        hi = bisect.bisect_right(self._samples, now, key=lambda s: s[0])
        return [self._samples[i] for i in range(lo, hi)]

    def values(self, now: float, span_s: float | None = None) -> list[float]:
        """The values inside the window (or its last ``span_s`` seconds), oldest first."""
        return [v for _, v in self.samples(now, span_s)]

    def count(self, now: float, span_s: float | None = None) -> int:
        """How many samples are inside the window (or its last ``span_s`` seconds)."""
        return len(self.samples(now, span_s))

    def count_where(self, now: float, predicate: Callable[[float], bool], span_s: float | None = None) -> int:
        """How many samples inside the window satisfy ``predicate``."""
        return sum(1 for v in self.values(now, span_s) if predicate(v))

    def ratio(self, now: float, predicate: Callable[[float], bool] = bool, span_s: float | None = None) -> float | None:
        """The fraction of samples inside the window that satisfy ``predicate`` (default: non-zero, i.e. a
        1.0 "bad" marker); ``None`` when the window is empty."""
        values = self.values(now, span_s)
        if not values:
            return None
        return sum(1 for v in values if predicate(v)) / len(values)

    def __len__(self) -> int:
        """Samples held (before any eviction a query would do)."""
        return len(self._samples)
