"""The chat window's transcript without Qt: each message's Markdown block, the reply streaming now, which blocks a
long conversation shows first and how often the streaming reply's Markdown is rendered again.

``transcript_view.py`` puts these in the window; keeping the decisions here tests them without a display.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from trayllm.chat.reply_stats import stats_line
from trayllm.chat.store import Message

FAILED = "**The reply failed** (Retry asks again)"
# Opening a conversation renders this many of its newest messages; older ones come a page at a time when the
# reader scrolls to the top. A page renders in a few tens of milliseconds, so a 1,000-message conversation
# paints as fast as a 40-message one.
PAGE = 40
# The streaming reply's Markdown is rendered again at most this often; tokens arriving in between are appended
# as plain text. Rendering it costs time in proportion to the reply, and at 100 tokens/s a render per token
# would take the UI thread; ten renders a second still look live.
RENDER_INTERVAL_S = 0.1


def message_blocks(
    messages: Iterable[Message], *, model_name: str, kibana_url: str = "", streaming_id: int | None = None
) -> list[str]:
    """One Markdown block per message shown: system messages are not, nor the reply streaming into message
    ``streaming_id`` (``live_block`` shows it). A reply is headed by the model that wrote it (else
    ``model_name``) and followed by its stats line, and a failed one says so."""
    blocks = []
    for message in messages:
        if message.role == "system" or message.id == streaming_id:
            continue
        if message.role == "user":
            blocks.append(f"**You**\n\n{message.content}")
            continue
        stats = message.stats
        text = message.content
        if stats is not None and stats.error:
            text += f"\n\n{FAILED}"
        line = f"_{stats_line(stats, kibana_url)}_" if stats is not None else ""
        blocks.append(
            f"**{(stats.model if stats and stats.model else None) or model_name}**\n\n{text}"
            + (f"\n\n{line}" if line.strip("_") else "")
        )
    return blocks


def live_block(model_name: str, text: str) -> str:
    """The reply arriving now, headed by the model writing it (``…`` until its first token)."""
    return f"**{model_name}**\n\n{text or '…'}"


class Backlog:
    """The blocks of a conversation not shown yet, oldest first, handed out a page at a time from the newest end:
    a long conversation opens on its last page and grows upwards as the reader scrolls back."""

    def __init__(self, blocks: Sequence[str] = (), page: int = PAGE) -> None:
        self._blocks = list(blocks)
        self.page = page

    def __len__(self) -> int:
        return len(self._blocks)

    def take_newest(self) -> list[str]:
        """The newest page still held back, oldest first (empty once all are out)."""
        cut = max(0, len(self._blocks) - self.page)
        taken = self._blocks[cut:]
        del self._blocks[cut:]
        return taken


class RenderPacer:
    """When the streaming reply's Markdown is rendered again: at most once every ``interval_s`` of ``clock``
    (tests and the benchmark pass their own clock), and at once after :meth:`reset` so the first token replaces
    the ``…`` placeholder."""

    def __init__(self, interval_s: float = RENDER_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last = -float("inf")

    def reset(self) -> None:
        self._last = -float("inf")

    def wait_s(self) -> float:
        """Seconds until the next render is due (0 when it is due now)."""
        return max(0.0, self._last + self.interval_s - self._clock())

    def rendered(self) -> None:
        self._last = self._clock()
