"""Take docs/chat.png and docs/health.png: the chat window with a real conversation, and its Health view.

    .venv/bin/python scripts/chat_screenshot.py [docs]

It starts Xvfb (tests/desktop_session.py) and a real daemon on the embedded model. It opens the chat window
on the xcb platform, has a short real conversation and saves the window, then a minute of traffic later it
saves the Health tab. It needs `apt-get install libxcb-icccm4 libxcb-keysyms1` (Qt's xcb plugin) on top of
what `make test` installs; it is a docs tool, not part of CI.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from daemons import spawn_daemon  # noqa: E402  (test helpers: a real daemon process on the shared model cache)
from desktop_session import start_desktop_session  # noqa: E402

QUESTIONS = ("What is the capital of France?", "Give me a Python one-liner that reverses a string.")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs")
    with (
        tempfile.TemporaryDirectory(prefix="trayllm-shot-") as tmp,
        start_desktop_session(Path(tmp) / "session", fakes=False) as session,
    ):
        os.environ.update(DISPLAY=session.display, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "xcb"))
        daemon = spawn_daemon(Path(tmp) / "daemon")
        try:
            from PySide6.QtCore import QEventLoop, QTimer
            from PySide6.QtWidgets import QApplication

            from trayllm.chat.store import ConversationStore
            from trayllm.chat.window import ChatWindow
            from trayllm.config import load_settings

            _app = QApplication.instance() or QApplication(sys.argv[:1])  # kept alive while windows exist
            settings = load_settings({"socket": str(daemon.socket), "kibana_url": "http://127.0.0.1:5601"}, environ={})
            window = ChatWindow(settings, ConversationStore(Path(tmp) / "chat.db"), poll_ms=1000)
            window.resize(1100, 720)
            window.show()

            def wait(condition, seconds: float) -> None:
                """Run the event loop until ``condition()`` or ``seconds`` (a real loop, as the app runs)."""
                deadline = time.monotonic() + seconds
                loop = QEventLoop()
                check = QTimer()
                check.timeout.connect(lambda: (condition() or time.monotonic() > deadline) and loop.quit())
                check.start(100)
                loop.exec()
                check.stop()

            def pause(seconds: float) -> None:
                loop = QEventLoop()
                QTimer.singleShot(int(seconds * 1000), loop.quit)
                loop.exec()

            wait(lambda: window.model_name != "?", 30)
            window.temperature.setValue(0.0)
            window.max_tokens.setValue(48)
            for question in QUESTIONS:
                window.input.setPlainText(question)
                window.send()
                wait(lambda: window._worker is None, 120)
            pause(1.5)
            window.grab().save(str(out / "chat.png"))
            window.tabs.setCurrentIndex(1)
            for _ in range(6):  # a little traffic, so the charts have lines
                window.tabs.setCurrentIndex(0)
                window.input.setPlainText("Name a colour.")
                window.send()
                wait(lambda: window._worker is None, 60)
                pause(1.2)
            window.tabs.setCurrentIndex(1)
            pause(1.5)
            window.grab().save(str(out / "health.png"))
            window.close()
        finally:
            daemon.stop()
    print(f"saved {out / 'chat.png'} and {out / 'health.png'}")


if __name__ == "__main__":
    main()
