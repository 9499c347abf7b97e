"""Issue 7, acceptance 1: the chat window (offscreen, pytest-qt) against the real daemon and embedded model."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemons import spawn_daemon
from PySide6.QtCore import Qt

from trayllm.chat.store import ConversationStore
from trayllm.chat.window import ChatWindow
from trayllm.config import load_settings
from trayllm.telemetry.reader import iter_records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, converted_model_dir: Path):
    """One daemon for the module, in a home the tests can also restart it in."""
    root = tmp_path_factory.mktemp("chat-home")
    daemon = spawn_daemon(root)
    yield root, daemon
    daemon.stop()


def make_window(qtbot, root: Path, tmp_path: Path, store_path: Path | None = None) -> ChatWindow:
    settings = load_settings(
        {
            "socket": str(root / "xdg_runtime_dir" / "trayllm" / "daemon.sock"),
            "state_dir": str(root / "xdg_state_home" / "trayllm"),
        },
        environ={},
    )
    store = ConversationStore(store_path or tmp_path / "conversations.db")
    window = ChatWindow(settings, store, poll_ms=300)
    qtbot.addWidget(window)
    return window


def type_and_send(qtbot, window: ChatWindow, text: str) -> None:
    window.input.setPlainText(text)
    qtbot.keyClick(window.input, Qt.Key.Key_Return)  # Enter sends


def test_a_reply_streams_in_order_and_shows_its_stats(qtbot, home, tmp_path: Path) -> None:
    root, _ = home
    window = make_window(qtbot, root, tmp_path)
    qtbot.waitUntil(lambda: window.model_name != "?", timeout=10_000)
    window.temperature.setValue(0.0)  # greedy: the same answer on every run
    window.max_tokens.setValue(12)
    deltas: list[str] = []
    window.reply_delta.connect(deltas.append)
    with qtbot.waitSignal(window.reply_done, timeout=60_000):
        type_and_send(qtbot, window, "What is the capital of France?")
    assert deltas and window.input.toPlainText() == ""
    [user, reply] = window.store.messages(window.conversation_id)
    assert (user.role, user.content) == ("user", "What is the capital of France?")
    assert reply.content == "".join(deltas) and "Paris" in reply.content  # every token, in order
    stats = reply.stats
    assert stats.request_id and stats.first_token_ms > 0 and stats.completion_tokens >= len(deltas) - 1
    shown = window.transcript.toPlainText()
    assert "Paris" in shown and f"req {stats.request_id[:8]}" in shown and "first token" in shown
    assert window.conversations.count() == 1 and window.conversations.item(0).text().startswith("What is the capital")


def test_stop_cancels_the_generation_in_the_daemon(qtbot, home, tmp_path: Path) -> None:
    root, _ = home
    window = make_window(qtbot, root, tmp_path)
    window.max_tokens.setValue(2000)
    with qtbot.waitSignal(window.reply_done, timeout=60_000):
        type_and_send(qtbot, window, "Write a very long story about the sea.")
        qtbot.waitUntil(lambda: bool(window.streaming), timeout=30_000)  # tokens are arriving
        qtbot.keyClick(window.input, Qt.Key.Key_Escape)  # Esc stops
    reply = window.store.messages(window.conversation_id)[-1]
    assert reply.stats.finish_reason == "cancelled" and reply.content
    request_id = reply.stats.request_id
    records = root / "xdg_state_home" / "trayllm" / "requests.jsonl"
    qtbot.waitUntil(lambda: any(r["event"]["id"] == request_id for r in iter_records(records)), timeout=10_000)
    [record] = [r for r in iter_records(records) if r["event"]["id"] == request_id]
    assert record["error"]["type"] == "cancelled" and record["event"]["outcome"] == "unknown"
    assert record["gen_ai"]["usage"]["output_tokens"] < 2000


def test_history_survives_a_restart_of_the_window_and_exports(qtbot, home, tmp_path: Path) -> None:
    root, _ = home
    path = tmp_path / "kept.db"
    first = make_window(qtbot, root, tmp_path, path)
    first.max_tokens.setValue(6)
    with qtbot.waitSignal(first.reply_done, timeout=60_000):
        type_and_send(qtbot, first, "Say hello.")
    conversation = first.conversation_id
    first.close()
    first.store.close()

    second = make_window(qtbot, root, tmp_path, path)
    assert second.conversation_id == conversation
    assert [m.role for m in second.store.messages(conversation)] == ["user", "assistant"]
    assert "Say hello." in second.transcript.toPlainText()
    second.export_to(tmp_path / "chat.md")
    assert "Say hello." in (tmp_path / "chat.md").read_text()


def test_the_unreachable_banner_appears_and_clears(qtbot, tmp_path: Path, converted_model_dir: Path) -> None:
    root = tmp_path / "home"
    daemon = spawn_daemon(root)
    try:
        window = make_window(qtbot, root, tmp_path)
        qtbot.waitUntil(lambda: window.model_name != "?", timeout=10_000)
        assert window.banner.isHidden()
        daemon.stop()
        qtbot.waitUntil(lambda: not window.banner.isHidden(), timeout=10_000)
        assert "not reachable" in window.banner_text.text()
        daemon = spawn_daemon(root)  # the same socket again
        qtbot.waitUntil(lambda: window.banner.isHidden(), timeout=15_000)
    finally:
        daemon.stop()


def test_a_daemon_restart_mid_stream_shows_the_error_inline_and_retry_works(
    qtbot, tmp_path: Path, converted_model_dir: Path
) -> None:
    root = tmp_path / "home"
    daemon = spawn_daemon(root)
    try:
        window = make_window(qtbot, root, tmp_path)
        window.max_tokens.setValue(2000)
        with qtbot.waitSignal(window.reply_done, timeout=60_000):
            type_and_send(qtbot, window, "Write a very long story about the sea.")
            qtbot.waitUntil(lambda: bool(window.streaming), timeout=30_000)
            daemon.process.kill()  # the daemon dies mid-reply
            daemon.process.wait()
        reply = window.store.messages(window.conversation_id)[-1]
        assert reply.stats.error and reply.content  # what had arrived is kept, with the error
        assert window.retry_button.isVisibleTo(window) and window.send_button.isEnabled()
        assert "The reply failed" in window.transcript.toPlainText()
        daemon = spawn_daemon(root)
        window.max_tokens.setValue(5)
        with qtbot.waitSignal(window.reply_done, timeout=60_000):
            qtbot.mouseClick(window.retry_button, Qt.MouseButton.LeftButton)
        messages = window.store.messages(window.conversation_id)
        assert [m.role for m in messages] == ["user", "assistant"]  # the failed reply was replaced
        assert messages[-1].stats.error is None and messages[-1].content
    finally:
        daemon.stop()


def test_new_rename_search_and_delete_conversations(qtbot, home, tmp_path: Path, monkeypatch) -> None:
    from PySide6.QtWidgets import QInputDialog

    root, _ = home
    window = make_window(qtbot, root, tmp_path)
    first = window.conversation_id
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Sea stories", True))
    window.rename_conversation()
    window.new_conversation()
    assert window.conversation_id != first and window.conversations.count() >= 2
    window.search.setText("sea")
    assert [window.conversations.item(i).text() for i in range(window.conversations.count())] == ["Sea stories"]
    window.search.setText("")
    window.open_conversation(first)
    window.delete_conversation()
    assert all(c.id != first for c in window.store.list())
