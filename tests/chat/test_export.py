"""Exports of a conversation: the exact Markdown, every field in JSON, and a file only its owner can read."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from trayllm.chat.export import export_json, export_markdown, write_export
from trayllm.chat.reply_stats import ReplyStats
from trayllm.chat.store import ConversationStore


def test_export_markdown_exact(store: ConversationStore, stats: ReplyStats):
    conversation = store.create("WAL", system_prompt="You are terse.")
    store.add_message(conversation.id, "user", "What is WAL?")
    store.add_message(conversation.id, "assistant", "A write-ahead log.", stats)
    store.add_message(conversation.id, "assistant", "", ReplyStats(error="timeout", finish_reason="error"))
    assert export_markdown(store, conversation.id) == (
        "# WAL\n\n"
        "## System prompt\n\nYou are terse.\n\n"
        "## User\n\nWhat is WAL?\n\n"
        "## Assistant\n\nA write-ahead log.\n\n"
        "_first token 312 ms · 48 tokens · 15.2 tok/s · peak VRAM 1 MiB · req 3f2a1b9c_\n\n"
        "## Assistant\n\n"
        "_finish error · error: timeout_\n"
    )
    assert export_markdown(store, store.create().id) == "# Untitled conversation\n"


def test_export_json(store: ConversationStore, stats: ReplyStats):
    conversation = store.create("J", temperature=0.3)
    store.add_message(conversation.id, "user", "q")
    store.add_message(conversation.id, "assistant", "a", stats)
    data = json.loads(json.dumps(export_json(store, conversation.id)))
    assert data["title"] == "J" and data["temperature"] == 0.3 and data["top_p"] is None
    assert data["created"].endswith("Z") and "T" in data["created"]
    assert [(m["role"], m["content"]) for m in data["messages"]] == [("user", "q"), ("assistant", "a")]
    assert data["messages"][0]["stats"] is None
    assert data["messages"][1]["stats"]["request_id"] == stats.request_id
    assert data["messages"][1]["stats"]["tokens_per_second"] == 15.23


@pytest.mark.parametrize("name", ["chat.md", "chat.json"])
def test_an_export_is_written_0600_whatever_the_umask(store: ConversationStore, tmp_path: Path, name: str):
    conversation = store.create("private")
    store.add_message(conversation.id, "user", "my secret plan")
    path = tmp_path / name
    path.write_text("an older export")
    path.chmod(0o644)
    previous = os.umask(0o022)
    try:
        write_export(store, conversation.id, path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "my secret plan" in text and "older" not in text
