"""What the chat window costs as conversations grow (issue 18): `python -m trayllm.bench.chat` (offscreen Qt).

Three figures, each next to what the window did before, measured the same way on the same machine:

- **A streamed token**: the UI thread's time for one token of a reply (the transcript's own work and the repaint
  it causes, through ``processEvents``) with 10, 50 and 200 messages above it. Tokens arrive at
  ``TOKENS_PER_S`` on a simulated clock, so the reply's Markdown is rendered again as often as in the window;
  the median is a typical token, the mean includes those renders. Before: ``setMarkdown`` of the whole transcript.
- **First paint**: opening a 1,000-message conversation in a ``ChatWindow`` (reading it from the store, turning
  it into blocks, rendering what is shown, painting), until the transcript has painted. Before: the whole
  transcript through ``setMarkdown``, then the paint.
- **Search**: ``ConversationStore.list(query)`` over 10,000 stored messages, through the FTS5 index and through
  the LIKE scan a SQLite without FTS5 falls back to, for a rare word, a common word, two words, a half-typed
  word, and two letters (too short for trigrams: both ways scan).

Targets (issue 18): a token under 5 ms and flat from 10 to 200 messages; first paint under 300 ms; search under
50 ms.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import QApplication, QTextBrowser

from trayllm.chat.store import ConversationStore
from trayllm.chat.transcript import RenderPacer, live_block, message_blocks
from trayllm.chat.transcript_view import TranscriptView
from trayllm.chat.window import ChatWindow
from trayllm.config import load_settings

SIZES = (10, 50, 200)
TOKENS = 300
TOKENS_PER_S = 100  # a GPU's pace: the harder case for the window
OPEN_MESSAGES = 1000
SEARCH_MESSAGES = 10_000
SEARCH_CONVERSATIONS = 100
REPEATS = 7
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "so", "vi", "de", "pa", "ch", "gr", "ul", "en", "or", "is")


@dataclass(frozen=True)
class TokenCost:
    messages: int
    median_ms: float
    mean_ms: float
    before_ms: float  # setMarkdown of the whole transcript, per token


@dataclass(frozen=True)
class SearchCost:
    query: str
    meaning: str
    found: int  # conversations, through the index
    like_found: int  # and through the scan: the same, or search is broken
    fts_ms: float
    like_ms: float


def _words(rng: random.Random, count: int) -> list[str]:
    return ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(count)]


def _history(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """Turns of the window's shape: a one-line question, then a reply with paragraphs, a list and code."""
    vocabulary = _words(rng, 2000)
    turns: list[tuple[str, str]] = []
    for i in range(count):
        if i % 2 == 0:
            turns.append(("user", " ".join(rng.choices(vocabulary, k=rng.randint(6, 20))) + "?"))
            continue
        paragraph = " ".join(rng.choices(vocabulary, k=60))
        items = "\n".join(f"- **{rng.choice(vocabulary)}** {' '.join(rng.choices(vocabulary, k=8))}" for _ in range(3))
        code = "\n".join(f"{rng.choice(vocabulary)} = {rng.randint(0, 99)}" for _ in range(4))
        turns.append(("assistant", f"{paragraph}\n\n{items}\n\n```python\n{code}\n```\n\n`{rng.choice(vocabulary)}`"))
    return turns


def _blocks(turns: Sequence[tuple[str, str]]) -> list[str]:
    return [f"**{'You' if role == 'user' else 'm'}**\n\n{text}" for role, text in turns]


def _reply_tokens(rng: random.Random) -> list[str]:
    """A reply of ``TOKENS`` pieces of a few characters, with Markdown the renders must redo."""
    text = _history(2, rng)[1][1] * 3
    size = max(1, len(text) // TOKENS)
    return [text[i : i + size] for i in range(0, size * TOKENS, size)]


class _SimulatedClock:
    """The time tokens arrive at, so the reply is rendered as often as at ``TOKENS_PER_S`` however fast this runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _app() -> None:
    """The application the widgets need: offscreen unless a platform is chosen (a benchmark needs no screen)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if QApplication.instance() is None:
        QApplication(sys.argv[:1])


def measure_tokens(sizes: Sequence[int] = SIZES) -> list[TokenCost]:
    """The UI thread's time per streamed token with each number of messages in the transcript."""
    _app()
    rng = random.Random(18)
    results = []
    for size in sizes:
        blocks = _blocks(_history(size, rng))
        tokens = _reply_tokens(rng)
        clock = _SimulatedClock()
        view = TranscriptView(pacer=RenderPacer(clock=clock))
        view.resize(760, 560)
        view.show()
        view.show_blocks(blocks)
        view.start_live("m")
        QApplication.processEvents()
        costs = []
        for token in tokens:
            clock.now += 1 / TOKENS_PER_S
            began = time.perf_counter()
            view.add_live(token)
            QApplication.processEvents()
            costs.append((time.perf_counter() - began) * 1000)
        view.close()
        before = _whole_transcript_ms(blocks, tokens[:20])
        results.append(TokenCost(size, statistics.median(costs), statistics.fmean(costs), before))
    return results


def _whole_transcript_ms(blocks: list[str], tokens: list[str]) -> float:
    """The window before issue 18: the whole transcript's Markdown set again for every token."""
    view = QTextBrowser()
    view.resize(760, 560)
    view.show()
    text, costs = "", []
    for token in tokens:
        text += token
        began = time.perf_counter()
        view.setMarkdown("\n\n---\n\n".join([*blocks, live_block("m", text)]))
        view.verticalScrollBar().setValue(view.verticalScrollBar().maximum())
        QApplication.processEvents()
        costs.append((time.perf_counter() - began) * 1000)
    view.close()
    return statistics.median(costs)


def measure_first_paint(messages: int = OPEN_MESSAGES) -> tuple[float, float]:
    """Milliseconds from opening a ``messages``-message conversation in the window to its first paint (median
    of ``REPEATS``), and the same for the whole transcript through ``setMarkdown`` (once: it is slow)."""
    _app()
    with tempfile.TemporaryDirectory(prefix="trayllm-chat-bench-") as tmp:
        store = ConversationStore(Path(tmp) / "conversations.db")
        long = store.create("long")
        for role, text in _history(messages, random.Random(1000)):
            store.add_message(long.id, role, text)  # type: ignore[arg-type]
        short = store.create("short")
        store.add_message(short.id, "user", "hi")
        window = ChatWindow(load_settings({"socket": str(Path(tmp) / "none.sock")}, environ={}), store, 60_000)
        window.resize(1000, 680)
        window.show()
        QApplication.processEvents()
        costs = []
        for _ in range(REPEATS):
            window.open_conversation(short.id)
            QApplication.processEvents()
            began = time.perf_counter()
            window.open_conversation(long.id)
            window.transcript.viewport().repaint()
            costs.append((time.perf_counter() - began) * 1000)
        blocks = message_blocks(store.messages(long.id), model_name="m")
        whole = QTextBrowser()
        whole.resize(window.transcript.size())
        whole.show()
        began = time.perf_counter()
        whole.setMarkdown("\n\n---\n\n".join(blocks))
        whole.verticalScrollBar().setValue(whole.verticalScrollBar().maximum())
        whole.viewport().repaint()
        before = (time.perf_counter() - began) * 1000
        whole.close()
        window.close()
        store.close()
    return statistics.median(costs), before


def measure_search(messages: int = SEARCH_MESSAGES) -> list[SearchCost]:
    """``ConversationStore.list(query)`` over ``messages`` stored messages, median of ``REPEATS``, both ways."""
    rng = random.Random(10_000)
    turns = _history(messages, rng)
    per = messages // SEARCH_CONVERSATIONS
    with tempfile.TemporaryDirectory(prefix="trayllm-chat-bench-") as tmp:
        path = Path(tmp) / "conversations.db"
        with ConversationStore(path) as store:
            for c in range(SEARCH_CONVERSATIONS):
                conversation = store.create(f"conversation {c} " + " ".join(_words(rng, 3)))
                for i, (role, text) in enumerate(turns[c * per : (c + 1) * per]):
                    if c % 40 == 7 and i == 3:
                        text += " the quokka question"
                    store.add_message(conversation.id, role, text)  # type: ignore[arg-type]
            two = " ".join(turns[per * 55 + 1][1].split()[10:12])
            common = max(turns[5][1].split()[:20], key=len)
            queries = [
                ("quokka", "rare word"),
                (common, "common word"),
                (two, "two words"),
                ("quok", "half-typed word"),
                ("ka", "two letters"),
            ]
            fts = [_timed(store, query) for query, _ in queries]
        with ConversationStore(path, full_text=False) as store:
            like = [_timed(store, query) for query, _ in queries]
    return [
        SearchCost(query, meaning, found, like_found, fts_ms, like_ms)
        for (query, meaning), (found, fts_ms), (like_found, like_ms) in zip(queries, fts, like, strict=True)
    ]


def _timed(store: ConversationStore, query: str) -> tuple[int, float]:
    """Conversations found and the median milliseconds of ``REPEATS`` searches."""
    costs, found = [], 0
    for _ in range(REPEATS):
        began = time.perf_counter()
        found = len(store.list(query))
        costs.append((time.perf_counter() - began) * 1000)
    return found, statistics.median(costs)


def to_markdown(tokens: list[TokenCost], paint: tuple[float, float], search: list[SearchCost], command: str) -> str:
    lines = [
        f"`{command}`",
        "",
        "| messages above the reply | per token (median) | per token (mean, with renders) | before (whole) |",
        "|---|---|---|---|",
        *(f"| {t.messages} | {t.median_ms:.2f} ms | {t.mean_ms:.2f} ms | {t.before_ms:.1f} ms |" for t in tokens),
        "",
        f"| opening {OPEN_MESSAGES:,} messages | first paint | before (whole) |",
        "|---|---|---|",
        f"| | {paint[0]:.0f} ms | {paint[1]:.0f} ms |",
        "",
        f"| search over {SEARCH_MESSAGES:,} messages | query | found (FTS5 / LIKE) | FTS5 | LIKE fallback |",
        "|---|---|---|---|---|",
        *(
            f"| {s.meaning} | `{s.query}` | {s.found} / {s.like_found} | {s.fts_ms:.2f} ms | {s.like_ms:.2f} ms |"
            for s in search
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    """Run all three and print the tables, named by the command that made them."""
    tokens = measure_tokens()
    paint = measure_first_paint()
    search = measure_search()
    print(to_markdown(tokens, paint, search, "python -m trayllm.bench.chat"))


if __name__ == "__main__":
    main()
