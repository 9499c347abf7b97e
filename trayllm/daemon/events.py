"""The daemon's event stream: alerts and state changes, kept briefly so a reconnecting client misses nothing.

``EventBus.publish`` may be called from any thread (the inference thread reports an OOM, the SLO thread
an alert, the loader a reload). Each event gets the id ``<boot>-<seq>``: ``boot`` is random per daemon
process, ``seq`` counts from 1. The last ``capacity`` events are kept.

``stream`` serves one SSE subscriber (``GET /v1/events``):

1. a ``hello`` event without an id (so it never moves the client's Last-Event-ID) carrying a snapshot
   of the daemon: state, pause, model, the alerts firing now, the boot id;
2. the replay: with a ``Last-Event-ID`` of this boot, every kept event after it; with one from another
   boot (the daemon restarted), every kept event; with none, nothing (the snapshot says what is going on).
   When the id is older than anything kept, the replay starts with a ``gap`` event: some were lost;
3. live events, with a ``: keepalive`` comment after ``keepalive_s`` of silence so dead connections
   are noticed; the stream ends when the bus closes (shutdown). A subscriber too slow to keep up with
   ``queue_limit`` pending events is dropped; it reconnects with its Last-Event-ID and loses nothing kept.

Replay and subscription happen under one lock, so no event is both replayed and delivered live, or lost
between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

RETRY_MS = 2000  # the client's reconnect delay, sent once per stream


@dataclass(frozen=True)
class Event:
    """One published event."""

    id: str
    seq: int
    type: str
    data: dict[str, Any]

    def sse(self) -> bytes:
        return sse_message(self.type, self.data, self.id)


def sse_message(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    """One SSE message: ``id``, ``event`` and one ``data`` line of JSON."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


_END = object()  # the bus closed
_DROPPED = object()  # this subscriber fell too far behind


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.limit = limit
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.dropped = False

    def offer(self, item: object) -> None:
        """Runs on the subscriber's loop."""
        if self.dropped:
            return
        if item is not _END and self.queue.qsize() >= self.limit:
            self.dropped = True
            item = _DROPPED
        self.queue.put_nowait(item)

    def send(self, item: object) -> None:
        """From any thread."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self.loop.call_soon_threadsafe(self.offer, item)


class EventBus:
    def __init__(self, capacity: int = 1000, *, boot_id: str | None = None, queue_limit: int = 1000) -> None:
        self.boot_id = boot_id or secrets.token_hex(4)
        self.queue_limit = queue_limit
        self._recent: deque[Event] = deque(maxlen=capacity)
        self._seq = 0
        self._lock = threading.Lock()
        self._subscribers: set[_Subscriber] = set()
        self._closed = False

    @property
    def last_id(self) -> str | None:
        with self._lock:
            return self._recent[-1].id if self._recent else None

    def publish(self, kind: str, data: dict[str, Any]) -> Event:
        """Keep and deliver one event; ``data`` gets ``at`` (Unix seconds) unless it has one."""
        with self._lock:
            self._seq += 1
            event = Event(f"{self.boot_id}-{self._seq}", self._seq, kind, {"at": round(time.time(), 3), **data})
            self._recent.append(event)
            for subscriber in self._subscribers:
                subscriber.send(event)
        return event

    def close(self) -> None:
        """End every stream (after the shutdown event); later subscribers get their replay and end at once."""
        with self._lock:
            self._closed = True
            for subscriber in self._subscribers:
                subscriber.send(_END)

    def recent(self) -> list[Event]:
        with self._lock:
            return list(self._recent)

    def _replay(self, last_event_id: str | None) -> tuple[list[Event], bool]:
        """(events after ``last_event_id``, whether some were lost). Call under the lock."""
        if last_event_id is None:
            return [], False
        boot, _, seq_text = last_event_id.strip().rpartition("-")
        kept = list(self._recent)
        if boot != self.boot_id or not seq_text.isdigit():
            return kept, bool(kept) and kept[0].seq > 1  # another boot: all of this one's that are kept
        seq = int(seq_text)
        after = [e for e in kept if e.seq > seq]
        return after, bool(after) and after[0].seq > seq + 1

    async def stream(
        self, last_event_id: str | None, hello: Callable[[], dict[str, Any]], keepalive_s: float = 15.0
    ) -> AsyncIterator[bytes]:
        """One subscriber's SSE byte stream (see the module docstring)."""
        subscriber = _Subscriber(asyncio.get_running_loop(), self.queue_limit)
        with self._lock:
            replay, gap = self._replay(last_event_id)
            closed = self._closed
            if not closed:
                self._subscribers.add(subscriber)
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            yield sse_message("hello", {**hello(), "boot_id": self.boot_id})
            if gap:
                yield sse_message("gap", {"after": last_event_id, "oldest_kept": replay[0].id})
            for event in replay:
                yield event.sse()
            if closed:
                return
            while True:
                try:
                    item = await asyncio.wait_for(subscriber.queue.get(), timeout=keepalive_s)
                except asyncio.TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if item is _END or item is _DROPPED:
                    return
                assert isinstance(item, Event)
                yield item.sse()
        finally:
            with self._lock:
                self._subscribers.discard(subscriber)
