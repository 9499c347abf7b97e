"""The scheduler's caller side: a bounded queue, per-user rate limits and the backlog cap on ``max_tokens``.

Callers on any thread meet only this part; the inference loop (``scheduler``) takes jobs from the queue
under the same lock. A request is refused here, at once and before it costs the daemon anything, with
ShuttingDown, QueueFull or RateLimited.
"""

from __future__ import annotations

import threading
from collections import deque

from trayllm.config import Settings
from trayllm.engine.handle import Counters, RequestHandle
from trayllm.engine.ratelimit import TokenBucket
from trayllm.engine.rows import Job
from trayllm.engine.types import RequestTimings, SamplingParams
from trayllm.errors import QueueFull, RateLimited, ShuttingDown


class Intake:
    """The queue and who may join it; the ``Scheduler`` that extends it runs what waits there.

    ``_wake`` guards the queue, ``_in_flight`` and the accepting/stopping flags, which the inference loop
    shares: a job leaves the queue and is counted in flight under it.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._bucket = TokenBucket(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self._pending: deque[Job] = deque()
        self._wake = threading.Condition()
        self._in_flight = 0  # taken from the queue and not yet finished
        self._accepting = True
        self._stopping = False
        self.counters = Counters()

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def backlogged(self) -> bool:
        return len(self._pending) >= self._settings.backlog_threshold

    def admit(self, user: str) -> None:
        """Refuse now what ``submit`` would refuse (ShuttingDown, QueueFull, RateLimited), taking ``user``'s
        allowance: a caller about to spend time on a request (tokenizing it) calls this first and then
        ``submit(..., admitted=True)``, so a caller over its limit costs the daemon nothing."""
        with self._wake:
            self._check_room()
            self._take_allowance(user)

    def submit(
        self,
        handle: RequestHandle,
        user: str,
        prompt: list[int],
        params: SamplingParams,
        arrived: float | None = None,
        *,
        admitted: bool = False,
    ) -> None:
        """Queue a request, or raise ShuttingDown / QueueFull / RateLimited at once.

        The queue is checked before the rate limit, so a request refused for a full queue
        does not use up the user's allowance; an ``admitted`` request used it in ``admit``.
        """
        settings = self._settings
        with self._wake:
            self._check_room()
            if not admitted:
                self._take_allowance(user)
            if self.backlogged and params.max_tokens > settings.backlog_max_tokens:
                params = SamplingParams(**{**params.__dict__, "max_tokens": settings.backlog_max_tokens})
                handle.max_tokens_capped = True
            timings = RequestTimings() if arrived is None else RequestTimings(arrived=arrived)
            self._pending.append(Job(handle, prompt, params, timings, timings.arrived + settings.request_timeout_s))
            self._wake.notify()

    def _check_room(self) -> None:
        """Raise ShuttingDown or QueueFull when no request may join the queue now (``_wake`` held)."""
        settings = self._settings
        if not self._accepting:
            self._reject()
            raise ShuttingDown("the daemon is shutting down", retry_after=5)
        if len(self._pending) >= settings.queue_size:
            self._reject()
            raise QueueFull(
                f"the queue is full ({settings.queue_size} waiting); retry shortly",
                retry_after=max(1.0, len(self._pending) / max(1, settings.max_batch)),
            )

    def _take_allowance(self, user: str) -> None:
        wait = self._bucket.take(user)
        if wait > 0:
            self._reject()
            raise RateLimited(f"rate limit for user {user!r} reached; retry in {wait:.1f} s", retry_after=wait)

    def _reject(self) -> None:
        self.counters.rejected += 1

    def stop_accepting(self) -> None:
        self._accepting = False

    def idle(self) -> bool:
        with self._wake:  # a job leaves the queue and enters the batch under this lock
            return not self._pending and self._in_flight == 0
