"""The chat window's transcript as Markdown, without Qt, so what a conversation shows is tested without a display.

The settled messages become blocks once (``message_blocks``) and the window keeps them; while a reply
streams, only its own block is added to them for each token (``transcript_markdown``).
"""

from __future__ import annotations

from collections.abc import Iterable

from trayllm.chat.reply_stats import stats_line
from trayllm.chat.store import Message

SEPARATOR = "\n\n---\n\n"
FAILED = "**The reply failed** (Retry asks again)"


def message_blocks(
    messages: Iterable[Message], *, model_name: str, kibana_url: str = "", streaming_id: int | None = None
) -> list[str]:
    """One Markdown block per message shown: system messages are not, nor the reply streaming into message
    ``streaming_id`` (``transcript_markdown`` adds it). A reply is headed by the model that wrote it (else
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


def transcript_markdown(blocks: Iterable[str], *, model_name: str, streaming: str | None = None) -> str:
    """The whole transcript: ``blocks``, then the reply arriving now when ``streaming`` is not None (``…`` until
    its first token)."""
    shown = list(blocks)
    if streaming is not None:
        shown.append(f"**{model_name}**\n\n{streaming or '…'}")
    return SEPARATOR.join(shown)
