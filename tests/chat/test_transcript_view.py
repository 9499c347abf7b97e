"""The transcript widget, offscreen with pytest-qt (issue 18): a streamed token changes only the reply arriving now,
the result is what the whole transcript's Markdown renders to, the view follows the end only while the reader is
there, and a 1,000-message conversation opens on its newest page and loads older ones on scrolling up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtGui import QTextDocument

from trayllm.chat.transcript import PAGE, RenderPacer, live_block
from trayllm.chat.transcript_view import TranscriptView

RULE = "\n\n---\n\n"  # what the view draws between two messages, in Markdown
REPLY = ["Sure", ": here is", " **bold", "** and a list:\n\n", "- one\n", "- two\n\n", "```py\nx = 1\n", "```\n\nDone."]


def history(count: int) -> list[str]:
    """Settled messages of the window's shape: turns alternating, replies with Markdown in them."""
    blocks = []
    for i in range(count):
        if i % 2 == 0:
            blocks.append(f"**You**\n\nquestion {i}: how do I do thing {i}?")
        else:
            blocks.append(f"**m**\n\nanswer {i}, with `code` and *emphasis*\n\n- step one\n- step two\n\n_5 tokens_")
    return blocks


def rendered(markdown: str) -> QTextDocument:
    """What Qt makes of ``markdown`` parsed whole: the old window's setMarkdown of the full transcript."""
    document = QTextDocument()
    document.setMarkdown(markdown)
    return document


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def view(qtbot, clock: Clock) -> Iterator[TranscriptView]:
    shown = TranscriptView(pacer=RenderPacer(0.1, clock=clock))
    qtbot.addWidget(shown)
    shown.resize(600, 400)
    shown.show()
    qtbot.waitExposed(shown)
    yield shown


def stream(view: TranscriptView, clock: Clock, pieces: list[str], step_s: float = 0.03) -> None:
    for piece in pieces:
        clock.now += step_s
        view.add_live(piece)


def test_streaming_changes_only_the_reply_and_ends_as_the_whole_transcript_renders(view, clock) -> None:
    blocks = history(10)
    view.show_blocks(blocks)
    settled = view.document().characterCount() - 1  # the text before the reply (less the document's last newline)
    changes: list[tuple[int, int, int]] = []
    view.document().contentsChange.connect(lambda at, removed, added: changes.append((at, removed, added)))
    view.start_live("m")
    stream(view, clock, REPLY)
    assert changes and min(at for at, _, _ in changes) >= settled  # no finished message was touched
    assert view.document().toPlainText().startswith(rendered(RULE.join(blocks)).toPlainText())

    final = live_block("m", "".join(REPLY)) + "\n\n_first token 12 ms_"
    view.end_live(final)
    whole = rendered(RULE.join([*blocks, final]))
    assert view.document().toMarkdown() == whole.toMarkdown()
    assert view.document().toHtml() == whole.toHtml()


def test_tokens_between_renders_are_appended_as_text_and_rendered_when_due(qtbot, view, clock) -> None:
    view.show_blocks(history(2))
    view.start_live("m")
    view.add_live("Hello")  # the first token renders at once, replacing the placeholder
    assert view.toPlainText().endswith("m\nHello")
    view.add_live(" **wor")  # not due yet: shown as it came
    assert view.toPlainText().endswith("Hello **wor")
    clock.now += 0.1
    view.add_live("ld**")  # due: the reply so far is rendered from its Markdown
    assert view.toPlainText().endswith("Hello world")
    view.add_live("!")
    assert view.toPlainText().endswith("Hello world!")
    qtbot.waitUntil(lambda: view.document().toMarkdown().rstrip().endswith("Hello **world**!"), timeout=2000)
    # the timer rendered the tail once the stream paused: no token was needed for it


def test_the_view_follows_the_reply_only_while_the_reader_is_at_the_end(view, clock) -> None:
    view.show_blocks(history(40))
    bar = view.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()
    view.start_live("m")
    stream(view, clock, REPLY * 3, step_s=0.05)
    assert bar.value() == bar.maximum()  # followed

    bar.setValue(bar.maximum() // 2)  # the reader scrolls up to read something
    kept = bar.value()
    stream(view, clock, REPLY * 3, step_s=0.05)
    assert bar.value() == kept and bar.maximum() > kept  # left where it was

    bar.setValue(bar.maximum())  # back at the end: followed again
    stream(view, clock, REPLY, step_s=0.05)
    view.end_live(live_block("m", "done"))
    assert bar.value() == bar.maximum()


def test_a_thousand_messages_open_on_the_newest_and_older_ones_load_on_scrolling_up(view) -> None:
    blocks = history(1000)
    view.show_blocks(blocks)
    text = view.toPlainText()
    assert "question 998:" in text and "answer 999," in text
    assert "question 958:" not in text and view.older == 1000 - PAGE
    bar = view.verticalScrollBar()
    assert bar.value() == bar.maximum()

    bar.setValue(1)
    was = view.cursorRect(view.document().find("question 960:")).top()
    bar.setValue(0)  # the reader reaches the top: the next older page goes above it
    assert view.older == 1000 - 2 * PAGE and "question 958:" in view.toPlainText()
    assert bar.value() > 0  # the view stayed on the text it showed (one pixel further up), not on the new page
    assert view.cursorRect(view.document().find("question 960:")).top() == was + 1

    while view.older:
        bar.setValue(0)
    assert view.document().toMarkdown() == rendered(RULE.join(blocks)).toMarkdown()


def test_a_page_that_does_not_fill_the_view_pulls_in_older_ones_once_shown(qtbot) -> None:
    small = TranscriptView(page=2)
    qtbot.addWidget(small)
    small.resize(600, 400)
    small.show_blocks([f"**You**\n\n{i}" for i in range(200)])
    assert small.older == 198  # hidden (as in the window, before it shows): one page, nothing to fill yet
    small.show()
    qtbot.waitExposed(small)
    bar = small.verticalScrollBar()
    assert 0 < small.older < 196 and bar.maximum() > 0  # enough pages to scroll up, not all of them
    assert bar.value() == bar.maximum()  # opened on the newest


def test_a_reply_streaming_while_older_pages_load_keeps_its_place(view, clock) -> None:
    blocks = history(3 * PAGE)
    view.show_blocks(blocks)
    view.start_live("m")
    stream(view, clock, REPLY[:3])
    view.verticalScrollBar().setValue(0)  # an older page goes in above the streaming reply
    stream(view, clock, REPLY[3:])
    final = live_block("m", "".join(REPLY))
    view.end_live(final)
    assert view.document().toMarkdown() == rendered(RULE.join([*blocks[-2 * PAGE :], final])).toMarkdown()
