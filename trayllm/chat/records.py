"""The conversation store's records: ``Conversation`` and ``Message``, their SQLite rows, and checks on their fields.

Kept apart from ``store.py`` so what a record is, and which values it may hold, reads in one place without the
SQL plumbing around it. Times are stored as Unix seconds and handed out as timezone-aware UTC datetimes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from trayllm.chat.reply_stats import ReplyStats

ROLES = ("user", "assistant", "system")
Role = Literal["user", "assistant", "system"]


class _Unset:
    """Marks an argument that was not given, so ``None`` can mean "back to the daemon default"."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


STAT_COLUMNS = tuple(f.name for f in dataclasses.fields(ReplyStats))
CONV_COLUMNS = "id, title, created, updated, system_prompt, temperature, top_p, max_tokens"
MSG_COLUMNS = "id, conversation_id, position, role, content, created, " + ", ".join(STAT_COLUMNS)


@dataclass(frozen=True)
class Conversation:
    """One conversation and its sampling settings; ``None`` settings mean "use the daemon's default", so a
    changed daemon default applies to old conversations too."""

    id: int
    title: str | None
    created: datetime
    updated: datetime
    system_prompt: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Message:
    """One turn; ``stats`` is set only on assistant replies the daemon reported on."""

    id: int
    conversation_id: int
    position: int
    role: Role
    content: str
    created: datetime
    stats: ReplyStats | None = None


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def conversation_from_row(row: tuple[Any, ...]) -> Conversation:
    """A ``Conversation`` from a row selected as ``CONV_COLUMNS``."""
    cid, title, created, updated, prompt, temperature, top_p, max_tokens = row
    return Conversation(cid, title, _utc(created), _utc(updated), prompt, temperature, top_p, max_tokens)


def message_from_row(row: tuple[Any, ...]) -> Message:
    """A ``Message`` from a row selected as ``MSG_COLUMNS``; all-empty stats columns read as no stats."""
    mid, cid, position, role, content, created, *stat_values = row
    stats = ReplyStats(*stat_values)
    return Message(mid, cid, position, role, content, _utc(created), None if stats.is_empty() else stats)


def stat_values(stats: ReplyStats | None) -> tuple[Any, ...]:
    """The values for ``STAT_COLUMNS``, in order; no stats store as all ``NULL``."""
    stats = stats or ReplyStats()
    return tuple(getattr(stats, name) for name in STAT_COLUMNS)


def validate_settings(temperature: Any, top_p: Any, max_tokens: Any) -> None:
    """Reject values the daemon would refuse, here, where the dialog can show which field is wrong."""
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if value is None or value is UNSET:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
    if temperature not in (None, UNSET) and not 0 <= temperature <= 2:
        raise ValueError(f"temperature must be within [0, 2], got {temperature!r}")
    if top_p not in (None, UNSET) and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be within (0, 1], got {top_p!r}")
    if max_tokens not in (None, UNSET) and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise ValueError(f"max_tokens must be a whole number of at least 1, got {max_tokens!r}")


def clean_prompt(prompt: str | None) -> str | None:
    """A blank system prompt is no system prompt."""
    return prompt if prompt and prompt.strip() else None


def clean_title(title: str | None) -> str | None:
    """A title on one line with single spaces; blank is no title."""
    return (" ".join(title.split()) or None) if title else None
