"""Per-user rate limits: a token bucket per caller, checked before a request costs the daemon anything."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Requests per user: ``burst`` at once, refilled at ``per_minute``."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        self._levels: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, user: str) -> float:
        """Take one token for ``user``; return 0 on success, else the seconds until one is free."""
        if self._rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            level, last = self._levels.get(user, (self._burst, now))
            level = min(self._burst, level + (now - last) * self._rate)
            if level >= 1.0:
                self._levels[user] = (level - 1.0, now)
                return 0.0
            self._levels[user] = (level, now)
            return (1.0 - level) / self._rate
