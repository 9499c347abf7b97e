"""The chat window's transcript as a reply streams and as a long conversation opens (offscreen, pytest-qt, issue 18),
with a stand-in for the reply worker so no daemon is needed: the finished messages stay as they were while the
reply streams, the transcript ends as the whole conversation's Markdown renders, and a 1,000-message conversation
opens on its newest messages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QTextDocument

from trayllm.chat import window as window_module
from trayllm.chat.store import ConversationStore
from trayllm.chat.transcript import PAGE, message_blocks
from trayllm.chat.window import ChatWindow
from trayllm.client import Done
from trayllm.config import Settings, load_settings

RULE = "\n\n---\n\n"  # what the view draws between two messages, in Markdown
REPLY = ["Here", " is **bold", "** text,", " a [link](https://example.com)", "\n\n- and\n", "- a list"]


class StandInWorker(QObject):
    """Streams ``REPLY`` and finishes, as ReplyWorker does when the daemon answers."""

    delta = Signal(str)
    finished = Signal(object)
    failed = Signal(str, str)
    stopped = Signal()

    def __init__(self, settings: Settings, body: dict[str, Any]) -> None:
        super().__init__()
        self.request_id: str | None = None

    @Slot()
    def run(self) -> None:
        for piece in REPLY:
            self.delta.emit(piece)
        self.finished.emit(Done("stop", None, None, "0123456789abcdef"))

    def stop(self) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(tmp_path / "conversations.db") as opened:
        yield opened


def open_window(qtbot, store: ConversationStore, tmp_path: Path) -> ChatWindow:
    settings = load_settings({"socket": str(tmp_path / "no-daemon.sock")}, environ={})
    shown = ChatWindow(settings, store, poll_ms=60_000)
    qtbot.addWidget(shown)
    shown.show()
    qtbot.waitExposed(shown)
    return shown


def rendered_conversation(window: ChatWindow) -> str:
    assert window.conversation_id is not None
    blocks = message_blocks(window.store.messages(window.conversation_id), model_name=window.model_name)
    document = QTextDocument()
    document.setMarkdown(RULE.join(blocks))
    return document.toMarkdown()


def test_a_streamed_reply_leaves_the_finished_messages_alone_and_ends_as_rendered_whole(
    qtbot, store: ConversationStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(window_module, "ReplyWorker", StandInWorker)
    conversation = store.create("old")
    for i in range(30):
        store.add_message(conversation.id, "user" if i % 2 == 0 else "assistant", f"turn {i} with *emphasis*")
    window = open_window(qtbot, store, tmp_path)
    document = window.transcript.document()
    settled = document.characterCount() - 1
    changes: list[int] = []
    document.contentsChange.connect(lambda at, removed, added: changes.append(at))
    deltas: list[str] = []
    window.reply_delta.connect(deltas.append)
    window.input.setPlainText("and now?")
    with qtbot.waitSignal(window.reply_done, timeout=10_000):
        qtbot.keyClick(window.input, Qt.Key.Key_Return)
    assert deltas == REPLY
    assert changes and min(changes) >= settled  # the 30 finished messages were not rendered again
    assert store.messages(conversation.id)[-1].content == "".join(REPLY)
    assert document.toMarkdown() == rendered_conversation(window)  # the final text, stats line and all
    assert "req 01234567" in window.transcript.toPlainText()


def test_a_thousand_message_conversation_opens_on_its_newest_messages(
    qtbot, store: ConversationStore, tmp_path: Path
) -> None:
    conversation = store.create("long")
    for i in range(1000):
        store.add_message(conversation.id, "user" if i % 2 == 0 else "assistant", f"message number {i}")
    window = open_window(qtbot, store, tmp_path)
    shown = window.transcript.toPlainText()
    assert "message number 999" in shown and "message number 0\n" not in shown
    assert 0 < window.transcript.older <= 1000 - PAGE
    bar = window.transcript.verticalScrollBar()
    assert bar.value() == bar.maximum()
