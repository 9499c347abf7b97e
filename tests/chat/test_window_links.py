"""The chat window's links and exports, offscreen with pytest-qt and no daemon (its banner shows; nothing here
asks one anything): a link the model wrote opens only if it is a web page, and an export is private."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QTextCursor

from trayllm.chat.reply_stats import ReplyStats
from trayllm.chat.store import ConversationStore
from trayllm.chat.window import ChatWindow
from trayllm.config import load_settings

SCHEMES = ("http", "https", "file", "smb", "x-terminal-emulator")
REPLY = (
    "See [the manual](https://example.com/docs), [your keys](file:///etc/hostname), "
    "[a share](smb://attacker.example/x) and [a terminal](x-terminal-emulator:-e%20sh)."
)


class Opened(QObject):
    """Stands in for the desktop: what QDesktopServices.openUrl would have handed to a browser or handler."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url.toString())


@pytest.fixture
def opened() -> Iterator[Opened]:
    desktop = Opened()
    for scheme in SCHEMES:
        QDesktopServices.setUrlHandler(scheme, desktop, "open")  # a str: PySide6 6.11 refuses bytes
    yield desktop
    for scheme in SCHEMES:
        QDesktopServices.unsetUrlHandler(scheme)


@pytest.fixture
def window(qtbot, tmp_path: Path) -> Iterator[ChatWindow]:
    settings = load_settings({"socket": str(tmp_path / "no-daemon.sock")}, environ={})
    store = ConversationStore(tmp_path / "conversations.db")
    shown = ChatWindow(settings, store, poll_ms=60_000)
    qtbot.addWidget(shown)
    shown.show()
    qtbot.waitExposed(shown)
    yield shown
    shown.close()
    store.close()


def click_link(qtbot, window: ChatWindow, text: str) -> None:
    """A real left click in the middle of the link whose text is ``text``."""
    found = window.transcript.document().find(text)
    assert not found.isNull(), text
    middle = QTextCursor(window.transcript.document())
    middle.setPosition((found.selectionStart() + found.selectionEnd()) // 2)
    point = window.transcript.cursorRect(middle).center()
    assert window.transcript.anchorAt(point), f"no link under {text!r}"
    qtbot.mouseClick(window.transcript.viewport(), Qt.MouseButton.LeftButton, pos=point)


def test_only_web_links_the_model_wrote_are_opened(qtbot, window: ChatWindow, opened: Opened):
    assert window.conversation_id is not None
    window.store.add_message(window.conversation_id, "user", "where are the docs?")
    window.store.add_message(window.conversation_id, "assistant", REPLY, ReplyStats(finish_reason="stop"))
    window.redraw()
    transcript = window.transcript.toPlainText()
    for text in ("the manual", "a share", "a terminal", "your keys"):
        click_link(qtbot, window, text)
    assert opened.urls == ["https://example.com/docs"]
    assert window.transcript.toPlainText() == transcript  # no file was loaded into the transcript in its place


@pytest.mark.parametrize("name", ["chat.md", "chat.json"])
def test_export_writes_a_file_only_its_owner_can_read(window: ChatWindow, tmp_path: Path, name: str):
    assert window.conversation_id is not None
    window.store.add_message(window.conversation_id, "user", "my secret plan")
    previous = os.umask(0o022)
    try:
        window.export_to(tmp_path / name)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert "my secret plan" in (tmp_path / name).read_text()
