"""The chat window's network work, off the UI thread: one streamed reply, and the daemon's status every 2 s.

Qt widgets may only be touched from the UI thread, and the network must never block it, so each of these
lives on its own ``QThread`` and talks to the window only through signals (queued across threads).

``ReplyWorker.stop()`` is called from the UI thread. It sets a flag and closes the worker's HTTP client.
Closing the connection makes the daemon cancel the generation at its next step (its record says
``cancelled``), and it also wakes a worker still waiting in the queue for its first token.
"""

from __future__ import annotations

import threading
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from trayllm import api_status, errors
from trayllm.client import DaemonClient, Done, TextDelta
from trayllm.config import Settings


class ReplyWorker(QObject):
    """Streams one chat completion; lives on its own thread for the length of the reply."""

    delta = Signal(str)
    finished = Signal(object)  # client.Done
    failed = Signal(str, str)  # message, error class name
    stopped = Signal()

    def __init__(self, settings: Settings, body: dict[str, Any]) -> None:
        super().__init__()
        self.settings = settings
        self.body = body
        self._stop = threading.Event()
        self._client: DaemonClient | None = None
        self.request_id: str | None = None  # known once the daemon answered (for a stopped reply's stats)

    @Slot()
    def run(self) -> None:
        try:
            with DaemonClient.from_settings(self.settings) as client:
                self._client = client
                if self._stop.is_set():
                    raise errors.DaemonNotRunning("stopped")
                for event in client.stream_chat(self.body):
                    self.request_id = client.last_request_id
                    if self._stop.is_set():
                        break
                    if isinstance(event, TextDelta):
                        self.delta.emit(event.text)
                    elif isinstance(event, Done):
                        self.finished.emit(event)
                        return
        except errors.TrayllmError as exc:
            if not self._stop.is_set():
                self.failed.emit(exc.message, type(exc).__name__)
                return
        except Exception as exc:  # a closed connection mid-read surfaces as whatever httpx raises
            if not self._stop.is_set():
                self.failed.emit(f"{type(exc).__name__}: {exc}", "EngineFailure")
                return
        if self._stop.is_set():
            self.stopped.emit()

    def stop(self) -> None:
        """From the UI thread: end the reply now (the daemon cancels it)."""
        self._stop.set()
        client = self._client
        if client is not None:
            client.close()


class StatusPoller(QObject):
    """Polls /v1/status every ``interval_ms``; says when the daemon is (un)reachable."""

    status = Signal(object)  # api_status.DaemonStatus
    unreachable = Signal(str)

    def __init__(self, settings: Settings, interval_ms: int = 2000) -> None:
        super().__init__()
        self.settings = settings
        self.interval_ms = interval_ms
        self._timer: QTimer | None = None

    @Slot()
    def start(self) -> None:
        """Runs on the poller's thread: its timer belongs to that thread."""
        self._timer = QTimer()
        self._timer.timeout.connect(self.poll)
        self._timer.start(self.interval_ms)
        self.poll()

    @Slot()
    def shutdown(self) -> None:
        """Runs on the poller's thread (a timer may only be stopped by its own thread)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer.deleteLater()
            self._timer = None

    @Slot()
    def poll(self) -> None:
        try:
            with DaemonClient.from_settings(self.settings, timeout=3.0) as client:
                result: api_status.DaemonStatus = client.status()
        except errors.TrayllmError as exc:
            self.unreachable.emit(exc.message)
            return
        self.status.emit(result)
