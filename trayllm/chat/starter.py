"""The chat window's "Start daemon": `trayllm up`'s start on a worker thread, and what the banner says about it.

Starting waits until the model is ready (minutes on a first run), which must not block the UI thread; the
window learns how it ended from ``ended``, queued to the UI thread like the other workers' signals. Until
then, and after a failed start until the daemon is ready, the banner shows ``note`` rather than the
status poller's "not reachable": a start's error line must stay readable, not be replaced 2 s later.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal, Slot

from trayllm import api_status
from trayllm.config import Settings
from trayllm.errors import TrayllmError
from trayllm.supervisor.daemon import START_TIMEOUT_S, start_and_wait_ready

STARTING = "Starting the daemon…"


class DaemonStarter(QObject):
    """Starts the daemon as `trayllm up` does, one start at a time. Lives on the UI thread."""

    ended = Signal(str)  # "" once the daemon is ready, else the line `trayllm up` would print
    _finished = Signal(str)  # from the worker thread, to settle ``note`` on the UI thread before ``ended``

    def __init__(self, settings: Settings, timeout: float = START_TIMEOUT_S) -> None:
        super().__init__()
        self.settings = settings
        self.timeout = timeout
        self.note: str | None = None  # the banner's text about the last start; None: nothing to say
        self._thread: threading.Thread | None = None
        self._finished.connect(self._settle)

    def start(self) -> bool:
        """Begin a start on a worker thread; False (and nothing done) while one is under way."""
        if self._thread is not None and self._thread.is_alive():
            return False
        self.note = STARTING
        self._thread = threading.Thread(target=self._run, name="trayllm-chat-start-daemon", daemon=True)
        self._thread.start()
        return True

    def holds_banner(self, status: api_status.DaemonStatus) -> bool:
        """Whether the banner stays up although the daemon answered: it is still loading for our start, or a
        start failed and it is not ready since."""
        if status.state == "ready":
            self.note = None
        return self.note is not None

    def _run(self) -> None:
        try:
            start_and_wait_ready(self.settings, self.timeout)
        except TrayllmError as exc:
            self._finished.emit(exc.message)
            return
        self._finished.emit("")

    @Slot(str)
    def _settle(self, error: str) -> None:
        self.note = f"The daemon did not start: {error}" if error else None
        self.ended.emit(error)
