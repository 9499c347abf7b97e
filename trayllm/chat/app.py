"""Starting the chat window: the QApplication around ``ChatWindow`` (kept apart so tests build windows alone)."""

from __future__ import annotations

import sys

from trayllm.config import Settings


def run_window(settings: Settings) -> int:
    """Show the chat window until it is closed; the exit status."""
    from PySide6.QtWidgets import QApplication

    from trayllm.chat.window import ChatWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("trayllm")
    app.setDesktopFileName("trayllm")
    window = ChatWindow(settings)
    window.show()
    return int(app.exec())
