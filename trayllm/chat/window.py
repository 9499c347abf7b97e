"""`trayllm chat`: the PySide6 chat window.

Conversations are listed on the left (new, rename, delete, search) and kept in SQLite (``store.py``). The
conversation on the right streams its replies as they arrive, rendered as Markdown (``transcript_view.py``:
a token costs the same however long the conversation, which opens on its newest messages). Each reply has its
cost underneath: first token, tokens, tokens/s, peak VRAM on a GPU, and the request id. The request id
links to its record in Kibana when ``kibana_url`` is set.

The network never runs on the UI thread: each reply streams on a ``ReplyWorker`` thread and the daemon's
status is polled on a ``StatusPoller`` thread (``workers.py``). A banner, with a button to start the daemon,
shows while the daemon cannot be reached, and goes away by itself once the daemon answers again.
A reply that fails (daemon restarted mid-stream, out of memory, …) keeps what had arrived, shows the
error inline, and can be retried.

Keys: Enter sends, Shift+Enter starts a new line, Ctrl+N starts a new conversation, Esc stops the reply.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMetaObject, Qt, QThread, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from trayllm import api_status
from trayllm.chat.export import write_export
from trayllm.chat.health import HealthView
from trayllm.chat.message_input import MessageInput
from trayllm.chat.model_picker import ModelPicker
from trayllm.chat.reply_stats import ReplyStats, reported_stats
from trayllm.chat.settings_panel import SettingsPanel
from trayllm.chat.starter import DaemonStarter
from trayllm.chat.store import ConversationStore, Message
from trayllm.chat.transcript import message_blocks
from trayllm.chat.transcript_view import TranscriptView
from trayllm.chat.workers import ReplyWorker, StatusPoller
from trayllm.client import Done
from trayllm.config import Settings


def open_link(url: QUrl) -> bool:
    """Open a link clicked in the transcript in the browser if it is a web page; ignore any other (file:, a
    desktop handler's own scheme, ...), since the model wrote it. True when it was opened."""
    return url.scheme().lower() in ("http", "https") and QDesktopServices.openUrl(url)


class ChatWindow(QMainWindow):
    reply_delta = Signal(str)  # reply text as it is shown
    reply_done = Signal()  # a reply ended, whatever the way (tests wait on it)

    def __init__(self, settings: Settings, store: ConversationStore | None = None, poll_ms: int = 2000) -> None:
        super().__init__()
        self.settings = settings
        self.store = store or ConversationStore(settings.data_path / "conversations.db")
        self.setWindowTitle("trayllm")
        self.resize(1000, 680)
        self.model_name = "?"
        self.queue_depth = 0
        self.conversation_id: int | None = None
        self.streaming: str | None = None  # the reply arriving now
        self.reply_message: Message | None = None
        self.last_error: str | None = None
        self._worker: ReplyWorker | None = None
        self._thread: QThread | None = None
        self._starter = DaemonStarter(settings)
        self._starter.ended.connect(self._on_start_ended)
        self._build()
        self._poller_thread = QThread(self)
        self._poller = StatusPoller(settings, poll_ms)
        self._poller.moveToThread(self._poller_thread)
        self._poller_thread.started.connect(self._poller.start)
        self._poller.status.connect(self._on_status)
        self._poller.unreachable.connect(self._on_unreachable)
        self._poller_thread.start()
        self.refresh_list()
        conversations = self.store.list()
        if conversations:
            self.open_conversation(conversations[0].id)
        else:
            self.new_conversation()

    # -- layout ----------------------------------------------------------------------------------

    def _build(self) -> None:
        self.banner = QWidget()
        banner_row = QHBoxLayout(self.banner)
        self.banner_text = QLabel("The trayllm daemon is not running.")
        self.start_button = QPushButton("Start daemon")
        self.start_button.clicked.connect(self.start_daemon)
        banner_row.addWidget(self.banner_text, 1)
        banner_row.addWidget(self.start_button)
        self.banner.setStyleSheet("background: #fff3cd; color: #664d03;")
        self.banner.hide()

        self.search = QLineEdit(placeholderText="Search conversations")
        self.search.textChanged.connect(self.refresh_list)
        self.conversations = QListWidget()
        self.conversations.itemClicked.connect(lambda item: self.open_conversation(item.data(Qt.ItemDataRole.UserRole)))
        self.conversations.itemDoubleClicked.connect(lambda _: self.rename_conversation())
        new, delete = QPushButton("New"), QPushButton("Delete")
        new.clicked.connect(self.new_conversation)
        delete.clicked.connect(self.delete_conversation)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.search)
        left_layout.addWidget(self.conversations, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(new)
        buttons.addWidget(delete)
        left_layout.addLayout(buttons)

        self.settings_panel = SettingsPanel()
        self.settings_panel.changed.connect(self._save_settings)
        # the tests and scripts/chat_screenshot.py set these on the window by name
        self.system_prompt, self.temperature = self.settings_panel.system_prompt, self.settings_panel.temperature
        self.top_p, self.max_tokens = self.settings_panel.top_p, self.settings_panel.max_tokens

        self.transcript = TranscriptView()
        self.transcript.anchorClicked.connect(open_link)
        self.waiting = QLabel("")
        self.input = MessageInput(placeholderText="Message (Enter sends, Shift+Enter new line)")
        self.input.setFixedHeight(80)
        self.input.submitted.connect(self.send)
        self.input.escaped.connect(self.stop)
        self.send_button, self.stop_button = QPushButton("Send"), QPushButton("Stop")
        self.regenerate_button, self.retry_button = QPushButton("Regenerate"), QPushButton("Retry")
        self.copy_button, self.export_button = QPushButton("Copy"), QPushButton("Export")
        self.send_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        self.regenerate_button.clicked.connect(self.regenerate)
        self.retry_button.clicked.connect(self.regenerate)
        self.copy_button.clicked.connect(self.copy_last_reply)
        self.export_button.clicked.connect(self.export_dialog)
        actions = QHBoxLayout()
        for button in (
            self.send_button,
            self.stop_button,
            self.regenerate_button,
            self.retry_button,
            self.copy_button,
            self.export_button,
        ):
            actions.addWidget(button)
        chat = QWidget()
        chat_layout = QVBoxLayout(chat)
        self.model_picker = ModelPicker(self.settings)
        chat_layout.addWidget(self.model_picker)
        chat_layout.addWidget(self.settings_panel)
        chat_layout.addWidget(self.transcript, 1)
        chat_layout.addWidget(self.waiting)
        chat_layout.addWidget(self.input)
        chat_layout.addLayout(actions)

        self.health = HealthView()
        self.tabs = QTabWidget()
        self.tabs.addTab(chat, "Chat")
        self.tabs.addTab(self.health, "Health")
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(self.tabs)
        splitter.setSizes([240, 760])
        root = QWidget()
        root_layout = QVBoxLayout(root)
        root_layout.addWidget(self.banner)
        root_layout.addWidget(splitter, 1)
        self.setCentralWidget(root)
        QShortcut(QKeySequence("Ctrl+N"), self, activated=self.new_conversation)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, activated=self.stop)
        self._update_buttons()

    # -- conversations ---------------------------------------------------------------------------

    def refresh_list(self) -> None:
        self.conversations.clear()
        for conversation in self.store.list(self.search.text() or None):
            item = QListWidgetItem(conversation.title or "New conversation")
            item.setData(Qt.ItemDataRole.UserRole, conversation.id)
            self.conversations.addItem(item)
            if conversation.id == self.conversation_id:
                self.conversations.setCurrentItem(item)

    def new_conversation(self) -> None:
        if self._busy:
            return
        self.open_conversation(self.store.create().id)
        self.refresh_list()

    def open_conversation(self, conversation_id: int) -> None:
        if self._busy:
            return
        self.conversation_id = conversation_id
        self.settings_panel.show_conversation(self.store.get(conversation_id))
        self.last_error = None
        self.redraw()
        self._update_buttons()

    def rename_conversation(self) -> None:
        if self.conversation_id is None:
            return
        title, ok = QInputDialog.getText(self, "Rename", "Title", text=self.store.get(self.conversation_id).title or "")
        if ok and title.strip():
            self.store.rename(self.conversation_id, title.strip())
            self.refresh_list()

    def delete_conversation(self) -> None:
        if self.conversation_id is None or self._busy:
            return
        self.store.delete(self.conversation_id)
        self.conversation_id = None
        remaining = self.store.list()
        if remaining:
            self.open_conversation(remaining[0].id)
        else:
            self.new_conversation()
        self.refresh_list()

    def _save_settings(self) -> None:
        if self.conversation_id is not None:
            self.store.update_settings(self.conversation_id, **self.settings_panel.chosen())

    # -- replies ---------------------------------------------------------------------------------

    @property
    def _busy(self) -> bool:
        return self._worker is not None

    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self._busy or self.conversation_id is None:
            return
        self.input.clear()
        self.transcript.append_block(self._block(self.store.add_message(self.conversation_id, "user", text)))
        if not self.store.get(self.conversation_id).title:
            self.store.auto_title(self.conversation_id)
            self.refresh_list()
        self._ask()

    def regenerate(self) -> None:
        """Ask again for the last user message (after an error, or for another answer)."""
        if self._busy or self.conversation_id is None:
            return
        self.store.delete_last_reply(self.conversation_id)
        self.redraw()
        if any(m.role == "user" for m in self.store.messages(self.conversation_id)):
            self._ask()

    def _ask(self) -> None:
        assert self.conversation_id is not None
        conversation = self.store.get(self.conversation_id)
        body: dict[str, Any] = {
            "messages": self.store.chat_messages(self.conversation_id),
            "stream_options": {"include_usage": True},
        }
        for name in ("temperature", "top_p", "max_tokens"):
            if getattr(conversation, name) is not None:
                body[name] = getattr(conversation, name)
        self.reply_message = self.store.add_message(self.conversation_id, "assistant", "")
        self.streaming, self.last_error = "", None
        self._worker = ReplyWorker(self.settings, body)
        self._thread = QThread(self)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.delta.connect(self._on_delta)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._worker.stopped.connect(self._on_stopped)
        self._thread.start()
        self.waiting.setText(f"waiting for the model… ({self.queue_depth} queued before this)")
        self.transcript.start_live(self.model_name)
        self._update_buttons()

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()

    def _on_delta(self, text: str) -> None:
        if self.streaming is None:
            return
        self.waiting.setText("")
        self.streaming += text
        self.transcript.add_live(text)
        self.reply_delta.emit(text)

    def _on_finished(self, done: Done) -> None:
        if done.timings is not None and done.timings.engine:  # with [[engines]], which one answered
            self.setWindowTitle(f"trayllm · reply from {done.timings.engine}")
        self._end_reply(
            reported_stats(
                done.timings,
                done.usage,
                finish_reason=done.finish_reason,
                request_id=done.request_id,
                model=self.model_name,
            )
        )

    def _on_failed(self, message: str, kind: str) -> None:
        self.last_error = message
        self._end_reply(ReplyStats(error=f"{kind}: {message}", finish_reason="error"))

    def _on_stopped(self) -> None:
        worker = self._worker
        self._end_reply(ReplyStats(finish_reason="cancelled", request_id=worker.request_id if worker else None))

    def _end_reply(self, stats: ReplyStats) -> None:
        if self.reply_message is not None:
            saved = self.store.update_message(self.reply_message.id, content=self.streaming or "", stats=stats)
            self.transcript.end_live(self._block(saved))
        self.streaming, self.reply_message = None, None
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait(5000)
        self._worker, self._thread = None, None
        self.waiting.setText("")
        self._update_buttons()
        self.reply_done.emit()

    def copy_last_reply(self) -> None:
        replies = [m for m in self.store.messages(self.conversation_id or 0) if m.role == "assistant"]
        if replies:
            QGuiApplication.clipboard().setText(replies[-1].content)

    def export_dialog(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(
            self, "Export conversation", "conversation.md", "Markdown (*.md);;JSON (*.json)"
        )
        if path:
            self.export_to(Path(path))

    def export_to(self, path: Path) -> None:
        """Markdown or JSON, by the file's suffix; private (0600), as the conversations are."""
        assert self.conversation_id is not None
        write_export(self.store, self.conversation_id, path)

    # -- rendering -------------------------------------------------------------------------------

    def _history_blocks(self) -> list[str]:
        """The stored messages as Markdown blocks, less the reply now streaming into the last one."""
        if self.conversation_id is None:
            return []
        return message_blocks(
            self.store.messages(self.conversation_id),
            model_name=self.model_name,
            kibana_url=self.settings.kibana_url,
            streaming_id=None if self.reply_message is None else self.reply_message.id,
        )

    def _block(self, message: Message) -> str:
        """One settled message's Markdown block."""
        [block] = message_blocks([message], model_name=self.model_name, kibana_url=self.settings.kibana_url)
        return block

    def redraw(self) -> None:
        """Show the conversation from scratch (on opening it, or after Regenerate took its last reply away); while
        a reply streams, the transcript changes by itself (``TranscriptView``)."""
        self.transcript.show_blocks(self._history_blocks())
        if self.reply_message is not None:
            self.transcript.start_live(self.model_name, self.streaming or "")

    def _update_buttons(self) -> None:
        busy = self._busy
        self.send_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
        self.regenerate_button.setEnabled(not busy)
        self.retry_button.setVisible(self.last_error is not None and not busy)

    # -- the daemon ------------------------------------------------------------------------------

    def _on_status(self, status: api_status.DaemonStatus) -> None:
        if not self._starter.holds_banner(status):
            self.banner.hide()
        self.queue_depth = status.queue.depth
        self.model_picker.serving(status.model)
        if status.model is not None:
            self.model_name = status.model.name
            self.settings_panel.model_label.setText(
                f"model: {status.model.name} ({status.model.device}, {status.state})"
            )
        self.health.add_sample(status, time.time())

    def _on_unreachable(self, message: str) -> None:
        self.banner_text.setText(self._starter.note or f"The trayllm daemon is not reachable: {message}")
        self.banner.show()

    def start_daemon(self) -> None:
        """Start it as `trayllm up` does, off the UI thread (see DaemonStarter)."""
        if self._starter.start():
            self.start_button.setEnabled(False)
            self.banner_text.setText(self._starter.note or "")

    def _on_start_ended(self, error: str) -> None:
        self.start_button.setEnabled(True)
        self.banner_text.setText(self._starter.note or "")
        self.banner.setVisible(bool(error))

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        self.stop()
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait(5000)
        if self._poller_thread.isRunning():
            QMetaObject.invokeMethod(self._poller, "shutdown", Qt.ConnectionType.BlockingQueuedConnection)
            self._poller_thread.quit()
            self._poller_thread.wait(5000)
        super().closeEvent(event)
