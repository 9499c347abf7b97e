"""Shared by tests/chat: the offscreen Qt platform (set before any QApplication exists), a conversation store
in the test's own data dir, and the reply stats the store and export tests write."""

import os
from collections.abc import Iterator

import pytest

from trayllm.chat.reply_stats import ReplyStats
from trayllm.chat.store import ConversationStore

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

STATS = ReplyStats(
    request_id="3f2a1b9c0d4e5f60",
    model="smollm2",
    first_token_ms=312.4,
    tokens_per_second=15.23,
    completion_tokens=48,
    prompt_tokens=20,
    vram_peak_bytes=1_000_000,
    finish_reason="stop",
)


@pytest.fixture
def store() -> Iterator[ConversationStore]:
    with ConversationStore() as opened:
        yield opened


@pytest.fixture
def stats() -> ReplyStats:
    """A finished reply's stats, with every field set (the export tests pin their exact rendering)."""
    return STATS
