"""The caller's end of a request and the engine's request counters: plain threads and asyncio, no torch.

Kept apart from the scheduler so that the daemon's HTTP side, the telemetry benchmark and the tests can hold
a handle without importing the inference loop (or torch).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from trayllm.engine.types import EngineEvent, Finished, TokenText

log = logging.getLogger(__name__)

FinishCallback = Callable[["RequestHandle", Finished], None]
"""The caller's own per-request callback, called once when the request ends (on an engine thread): the
daemon writes the request's record with it, holding its own context in the closure, so nothing of the
daemon's rides through the engine."""


class RequestHandle:
    """The caller's end of one request: its events, and a way to cancel it.

    Built on the caller's event loop (events arrive through ``call_soon_threadsafe``) or,
    with no loop, for a plain thread (events arrive through a thread-safe queue).
    """

    def __init__(
        self,
        request_id: str,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        on_finished: FinishCallback | None = None,
        keep_text: bool = False,
    ) -> None:
        self.request_id = request_id
        self._on_finished = on_finished
        self.text: list[str] = []  # the reply, kept only with keep_text (opt-in content records)
        self._keep_text = keep_text
        self._loop = loop
        self._async_events: asyncio.Queue[EngineEvent] | None = asyncio.Queue() if loop else None
        self._sync_events: queue.SimpleQueue[EngineEvent] = queue.SimpleQueue()
        self._cancelled = threading.Event()
        self.max_tokens_capped = False

    def cancel(self) -> None:
        """Ask the engine to stop this request at its next step."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def emit(self, event: EngineEvent) -> None:
        if self._keep_text and isinstance(event, TokenText):
            self.text.append(event.text)
        if self._loop is None or self._async_events is None:
            self._sync_events.put(event)
            return
        try:
            self._loop.call_soon_threadsafe(self._async_events.put_nowait, event)
        except RuntimeError:  # the caller's loop is gone; nobody is listening
            self.cancel()

    def finish(self, finished: Finished) -> None:
        """The engine's last word on this request: the Finished event, then the caller's callback (whose
        failure, a record that could not be written, must never stop the engine's other requests)."""
        self.emit(finished)
        if self._on_finished is None:
            return
        try:
            self._on_finished(self, finished)
        except Exception:
            log.exception("finish callback failed for request %s", self.request_id)

    async def events(self) -> AsyncIterator[EngineEvent]:
        assert self._async_events is not None, "handle was made without an event loop"
        while True:
            event = await self._async_events.get()
            yield event
            if isinstance(event, Finished):
                return

    def iter_events(self, timeout: float | None = None) -> Iterator[EngineEvent]:
        while True:
            event = self._sync_events.get(timeout=timeout)
            yield event
            if isinstance(event, Finished):
                return


@dataclass
class Counters:
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    rejected: int = 0
    tokens_in: int = 0
    tokens_out: int = 0

    def count_end(self, reason: str) -> None:
        """Count one request that ended for ``reason`` (a Finished reason): every engine ends requests the same
        three ways, so status reads the same counts whichever engine served."""
        if reason == "cancelled":
            self.cancelled += 1
        elif reason == "error":
            self.failed += 1
        else:
            self.completed += 1
