"""The chat window's transcript: finished messages are rendered once, only the streaming reply is rendered again,
and a long conversation opens on its newest page.

Setting the whole transcript's Markdown for every streamed token cost 7, 24 and 82 ms a token at 10, 50 and 200
messages (issue 18): the parse and the layout grow with the conversation. Here the document is built a message at
a time: each message's Markdown is parsed on its own (``setMarkdown`` on a scratch document, so it looks exactly
as in a transcript parsed whole) and inserted, with a horizontal rule between messages. The reply arriving now is
the document's tail from ``_live_start``: a token is appended there as plain text, and at most once per
``RENDER_INTERVAL_S`` that tail is replaced by its Markdown (and once more when the reply ends, with its stats), so
a token costs the same at 10 messages as at 1,000.

The view follows new text only while the reader is at the end. Opening a conversation renders its newest
``PAGE`` messages; older pages are put above them when the reader scrolls to the top, keeping what is on screen
where it was. What to show and when to render are decided in ``transcript.py``, without Qt.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtGui import (
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextDocumentFragment,
    QTextFormat,
)
from PySide6.QtWidgets import QTextBrowser, QWidget

from trayllm.chat.transcript import PAGE, Backlog, RenderPacer, live_block

AT_END_PX = 4  # this close to the bottom counts as "at the end" (a wheel step may stop a few pixels short)


def _rule() -> QTextBlockFormat:
    """The empty block between two messages, drawn as a horizontal rule (what Markdown's ``---`` becomes)."""
    rule = QTextBlockFormat()
    rule.setProperty(QTextFormat.Property.BlockTrailingHorizontalRulerWidth, 1)
    return rule


def _put(cursor: QTextCursor, markdown: str) -> None:
    """Insert ``markdown`` into the empty block ``cursor`` is in, rendered as ``setMarkdown`` renders it (a pasted
    fragment would leave its first paragraph in that block's format, so the block takes the fragment's first)."""
    scratch = QTextDocument()
    scratch.setMarkdown(markdown)
    first = scratch.firstBlock()
    cursor.setBlockFormat(first.blockFormat())
    cursor.setBlockCharFormat(first.charFormat())
    cursor.insertFragment(QTextDocumentFragment(scratch))


class TranscriptView(QTextBrowser):
    """A read-only transcript that never opens the links the model wrote (the window decides, see ``open_link``).

    ``show_blocks`` shows a conversation's settled messages; ``append_block`` adds one (the message just sent);
    ``start_live``, ``add_live`` and ``end_live`` show a reply as it streams and then as it was saved.
    """

    def __init__(self, parent: QWidget | None = None, *, page: int = PAGE, pacer: RenderPacer | None = None) -> None:
        # the model writes the links: Qt must neither open them nor load a file: one in place (openLinks)
        super().__init__(parent, openLinks=False)
        self.document().setUndoRedoEnabled(False)  # read-only: an undo step per token would only grow
        self._page = page
        self._backlog = Backlog(page=page)
        self._pacer = pacer or RenderPacer()
        self._live_start: int | None = None  # where the streaming reply begins in the document
        self._live_model = ""
        self._live_text = ""
        self._editing = False  # our own edits move the scroll bar: that is not the reader scrolling
        self._pinned = True  # the reader is at the end (or has not scrolled yet): new text keeps the view there
        self._timer = QTimer(self, singleShot=True)
        self._timer.timeout.connect(self._render_live)
        self.verticalScrollBar().valueChanged.connect(self._on_scrolled)

    # -- what the window calls ---------------------------------------------------------------------

    @property
    def older(self) -> int:
        """How many older messages are not in the document yet."""
        return len(self._backlog)

    def show_blocks(self, blocks: Sequence[str]) -> None:
        """Show a conversation's settled messages, from scratch: the newest page now, at the end; older pages as
        the reader scrolls up to them."""
        self._timer.stop()
        self._live_start = None
        with self._edit():
            self.clear()
            self._backlog = Backlog(blocks, self._page)
            cursor = QTextCursor(self.document())
            cursor.beginEditBlock()
            for block in self._backlog.take_newest():
                self._append(cursor, block)
            cursor.endEditBlock()
        self._pinned = True
        self._settle()

    def append_block(self, block: str) -> None:
        """Add a settled message at the end (no reply may be streaming: it is always the last)."""
        assert self._live_start is None, "a reply is streaming"
        with self._following():
            self._append(QTextCursor(self.document()), block)

    def start_live(self, model_name: str, text: str = "") -> None:
        """Show the reply that ``model_name`` starts writing now, with the ``text`` it has so far."""
        assert self._live_start is None, "a reply is streaming"
        self._live_model, self._live_text = model_name, text
        self._pacer.reset()
        with self._following():
            self._live_start = self._append(QTextCursor(self.document()), live_block(model_name, text))

    def add_live(self, text: str) -> None:
        """Add a streamed piece of the reply: appended as it is, with its Markdown rendered when that is due."""
        if self._live_start is None:
            return
        self._live_text += text
        wait = self._pacer.wait_s()
        if wait == 0:
            self._render_live()
            return
        with self._following():
            cursor = QTextCursor(self.document())
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.insertText(text, QTextCharFormat())  # plain: not the format of a link it follows
        if not self._timer.isActive():
            self._timer.start(math.ceil(wait * 1000))

    def end_live(self, block: str) -> None:
        """The reply ended: show it as the settled message ``block`` (with its stats) in its place."""
        if self._live_start is None:
            return
        self._timer.stop()
        self._replace_live(block)
        self._live_start = None

    # -- the document ------------------------------------------------------------------------------

    def _append(self, cursor: QTextCursor, markdown: str) -> int:
        """Put ``markdown`` at the end, after a rule; the position where it starts."""
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if not self.document().isEmpty():
            cursor.insertBlock(_rule(), QTextCharFormat())
            cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        start = cursor.position()
        _put(cursor, markdown)
        return start

    def _prepend(self, cursor: QTextCursor, markdown: str) -> None:
        """Put ``markdown`` at the start, before a rule."""
        if self.document().isEmpty():
            self._append(cursor, markdown)
            return
        cursor.setPosition(0)
        # a block inserted at 0 hands its format to the block after it: hand the first message its own back
        cursor.insertBlock(cursor.blockFormat(), cursor.blockCharFormat())
        cursor.setPosition(0)
        cursor.setBlockFormat(QTextBlockFormat())
        cursor.setBlockCharFormat(QTextCharFormat())
        cursor.insertBlock(_rule(), QTextCharFormat())
        cursor.setPosition(0)
        _put(cursor, markdown)

    def _render_live(self) -> None:
        if self._live_start is None:
            return
        self._timer.stop()
        self._replace_live(live_block(self._live_model, self._live_text))
        self._pacer.rendered()

    def _replace_live(self, markdown: str) -> None:
        assert self._live_start is not None
        with self._following():
            cursor = QTextCursor(self.document())
            cursor.beginEditBlock()
            cursor.setPosition(self._live_start)
            cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
            _put(cursor, markdown)
            cursor.endEditBlock()

    # -- scrolling ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _edit(self) -> Iterator[None]:
        self._editing = True
        try:
            yield
        finally:
            self._editing = False

    @contextlib.contextmanager
    def _following(self) -> Iterator[None]:
        """Edit the document; keep the view on the end if the reader was at the end, else where it was."""
        with self._edit():
            yield
        if self._pinned:
            self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())

    def _load_older(self) -> None:
        """Put the next older page above what is shown, keeping the view on the same text."""
        blocks = self._backlog.take_newest()
        if not blocks:
            return
        bar = self.verticalScrollBar()
        from_bottom = bar.maximum() - bar.value()
        length = self.document().characterCount()
        with self._edit():
            cursor = QTextCursor(self.document())
            cursor.beginEditBlock()
            for block in reversed(blocks):
                self._prepend(cursor, block)
            cursor.endEditBlock()
        if self._live_start is not None:
            self._live_start += self.document().characterCount() - length
        bar.setValue(bar.maximum() - from_bottom)

    def _settle(self) -> None:
        """Once the view has its size: load older pages while what is shown does not fill it (without a scroll
        bar there is no scrolling up to ask for them), and go to the end if the reader is there. A hidden view
        has no size to fill: it would load every page."""
        if not self.isVisible():
            return
        bar = self.verticalScrollBar()
        while self.older and bar.maximum() == 0:
            self._load_older()
        if self._pinned:
            bar.setValue(bar.maximum())

    def _on_scrolled(self, value: int) -> None:
        if self._editing:
            return
        bar = self.verticalScrollBar()
        self._pinned = value >= bar.maximum() - AT_END_PX
        if value == bar.minimum():
            self._load_older()

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self._settle()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._settle()
