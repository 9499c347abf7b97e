"""A conversation from the store as Markdown or JSON, and the private file the chat window's Export writes.

An export holds the same private text as the conversation database, so it is created as the database is:
readable by its owner alone (0600), whatever the umask.
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from trayllm.chat.reply_stats import stats_line
from trayllm.chat.store import SCHEMA_VERSION, ConversationStore


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def export_markdown(store: ConversationStore, conversation_id: int) -> str:
    """The conversation as Markdown to share or keep: title, system prompt, each turn under a role heading,
    each reply followed by its stats in italics."""
    conversation = store.get(conversation_id)
    parts = [f"# {conversation.title or 'Untitled conversation'}"]
    if conversation.system_prompt:
        parts += ["## System prompt", conversation.system_prompt]
    for message in store.messages(conversation_id):
        parts.append(f"## {message.role.capitalize()}")
        if message.content:
            parts.append(message.content)
        if message.stats is not None:
            line = stats_line(message.stats)
            if line:
                parts.append(f"_{line}_")
    return "\n\n".join(parts) + "\n"


def export_json(store: ConversationStore, conversation_id: int) -> dict[str, Any]:
    """The conversation with every field and each reply's stats; JSON-serialisable, times ISO 8601 UTC."""
    conversation = store.get(conversation_id)
    data: dict[str, Any] = {"format": "trayllm.conversation", "schema_version": SCHEMA_VERSION}
    for f in dataclasses.fields(conversation):
        value = getattr(conversation, f.name)
        data[f.name] = _iso(value) if isinstance(value, datetime) else value
    data["messages"] = [
        {
            "id": m.id,
            "position": m.position,
            "role": m.role,
            "content": m.content,
            "created": _iso(m.created),
            "stats": dataclasses.asdict(m.stats) if m.stats is not None else None,
        }
        for m in store.messages(conversation_id)
    ]
    return data


def write_export(store: ConversationStore, conversation_id: int, path: Path) -> None:
    """Write the conversation to ``path``: JSON for a ``.json`` name, Markdown otherwise. The file is made
    0600 (an existing one too, before a byte of the conversation goes into it)."""
    text = (
        json.dumps(export_json(store, conversation_id), indent=2)
        if path.suffix == ".json"
        else export_markdown(store, conversation_id)
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
