"""Starting the chat window: the QApplication around ``ChatWindow`` (kept apart so tests build windows alone)."""

from __future__ import annotations

import signal
import sys

from trayllm.config import Settings
from trayllm.errors import ConfigError
from trayllm.extras import missing_extra
from trayllm.supervisor import instances


def run_window(settings: Settings) -> int:
    """Show the chat window until it is closed; the exit status.

    SIGTERM (what `trayllm down` sends) closes the window the way its close button does, so a reply
    being streamed is stopped and stored rather than lost with the process.
    """
    try:
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
    except ImportError as exc:  # absent (the gui extra), or there but its Qt libraries do not load
        raise missing_extra(exc, "the chat window") or ConfigError(
            f"the chat window cannot load Qt ({exc}); use `trayllm chat --terminal`"
        ) from None

    from trayllm.chat.window import ChatWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("trayllm")
    app.setDesktopFileName("trayllm")
    window = ChatWindow(settings)
    window.show()
    previous = signal.signal(signal.SIGTERM, lambda *_: window.close())
    wake = QTimer()  # Python runs signal handlers only between bytecodes: let it in while Qt waits for events
    wake.timeout.connect(lambda: None)
    wake.start(200)
    try:
        with instances.hold(settings, "chat"):  # from here on `trayllm down` finds (and closes) this window
            return int(app.exec())
    finally:
        wake.stop()
        signal.signal(signal.SIGTERM, previous)
