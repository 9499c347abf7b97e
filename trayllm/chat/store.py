"""Conversation store for the chat window: conversations, their messages and each reply's stats, in SQLite.

Pure Python (no Qt), so the window stays a thin view and this file is tested on its own. One
file, ``$XDG_DATA_HOME/trayllm/conversations.db`` (directory 0700, file 0600: chats are private),
in WAL mode so a reader never waits on the window saving a streamed reply. The schema carries a
``user_version`` so later releases can migrate it; a file this release cannot read (corrupt, or
written by a newer trayllm) becomes a one-line :class:`~trayllm.errors.ConfigError` that names
the file and the fix instead of a traceback. Search goes through a full-text index where SQLite has FTS5
(``search.py``).

The records it hands out (``Conversation``, ``Message``), their rows and the checks on their fields are in
``records.py``; times are stored as Unix seconds and handed out as timezone-aware UTC datetimes.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from trayllm.chat.records import (
    CONV_COLUMNS,
    MSG_COLUMNS,
    ROLES,
    STAT_COLUMNS,
    UNSET,
    Conversation,
    Message,
    Role,
    clean_prompt,
    clean_title,
    conversation_from_row,
    message_from_row,
    stat_values,
    validate_settings,
)
from trayllm.chat.reply_stats import ReplyStats
from trayllm.chat.search import ensure_index, fts5_available, index_ready, matching
from trayllm.config import Settings, load_settings
from trayllm.errors import ConfigError

SCHEMA_VERSION = 1
DB_NAME = "conversations.db"
TITLE_MAX = 60

# _MIGRATIONS[n] takes the schema from version n to n + 1; append, never edit a released step.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            title TEXT,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            system_prompt TEXT,
            temperature REAL,
            top_p REAL,
            max_tokens INTEGER
        )""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
            content TEXT NOT NULL,
            created REAL NOT NULL,
            request_id TEXT,
            model TEXT,
            first_token_ms REAL,
            tokens_per_second REAL,
            completion_tokens INTEGER,
            prompt_tokens INTEGER,
            vram_peak_bytes INTEGER,
            finish_reason TEXT,
            error TEXT,
            UNIQUE (conversation_id, position)
        )""",
        "CREATE INDEX conversations_by_updated ON conversations (updated)",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION


def default_db_path(settings: Settings | None = None) -> Path:
    """Where the window keeps its conversations: ``data_path/conversations.db``."""
    return (settings or load_settings()).data_path / DB_NAME


class ConversationStore:
    """The chat window's history in one SQLite file.

    One connection, shared by every thread (``check_same_thread=False``) and serialised by a lock: the
    window writes from its UI thread and perhaps a worker, and SQLite's own locking is not needed between
    them. Unknown ids raise ``KeyError``; bad settings raise ``ValueError`` naming the field.

    ``full_text=False`` searches as a SQLite build without FTS5 does (tests and the benchmark force it);
    ``self.full_text`` says which way this store searches.
    """

    def __init__(self, path: str | Path | None = None, *, full_text: bool = True) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self._lock = threading.RLock()
        self._last_now = 0.0
        # Tighten our own data directory (new, or the default one); never a directory the caller chose.
        ours = path is None or not self.path.parent.exists() or self.path.parent == Settings().data_path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if ours:
            os.chmod(self.path.parent, 0o700)
        # Create the file 0600 before SQLite opens it; its -wal and -shm files copy that mode.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self.full_text = full_text
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ConfigError(
                f"{self.path}: not a readable conversation database ({exc}); move the file away "
                f"and trayllm starts a new one"
            ) from None
        except ConfigError:
            self._conn.close()
            raise

    def _setup(self) -> None:
        self.full_text = self.full_text and fts5_available(self._conn)
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA journal_mode = WAL")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"{self.path}: written by a newer trayllm (schema version {version}, this one reads "
                f"up to {SCHEMA_VERSION}); upgrade trayllm or move the file away"
            )
        if version < SCHEMA_VERSION or not index_ready(self._conn, self.full_text):
            with self._tx() as db:
                for step in _MIGRATIONS[version:]:
                    for statement in step:
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                ensure_index(db, self.full_text)

    # -- plumbing --------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; rolled back if the body raises."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> builtins.list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _now(self) -> float:
        """Wall-clock seconds, strictly increasing within this store so "newest first" never ties."""
        with self._lock:
            self._last_now = max(time.time(), self._last_now + 1e-6)
            return self._last_now

    def close(self) -> None:
        """Close the connection (idempotent); SQLite folds the WAL back into the main file."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- conversations ---------------------------------------------------------------

    def create(
        self,
        title: str | None = None,
        *,
        system_prompt: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
    ) -> Conversation:
        """A new, empty conversation. Settings left ``None`` follow the daemon's defaults."""
        validate_settings(temperature, top_p, max_tokens)
        now = self._now()
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO conversations (title, created, updated, system_prompt, temperature, top_p, max_tokens)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (clean_title(title), now, now, clean_prompt(system_prompt), temperature, top_p, max_tokens),
            )
            cid = cursor.lastrowid
        assert cid is not None
        return self.get(cid)

    def get(self, conversation_id: int) -> Conversation:
        rows = self._rows(f"SELECT {CONV_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,))
        if not rows:
            raise KeyError(f"no conversation {conversation_id}")
        return conversation_from_row(rows[0])

    def list(self, search: str | None = None) -> builtins.list[Conversation]:
        """Conversations, most recently active first; with ``search``, only those whose title or any message
        contains it, as typed (case-insensitive; nothing in it is a wildcard or query syntax)."""
        order = " ORDER BY updated DESC, id DESC"
        search = (search or "").replace("\0", "").strip()  # SQLite reads text only up to a NUL
        if not search:
            rows = self._rows(f"SELECT {CONV_COLUMNS} FROM conversations{order}")
        else:
            condition, params = matching(search, full_text=self.full_text)
            rows = self._rows(f"SELECT {CONV_COLUMNS} FROM conversations c WHERE {condition}{order}", params)
        return [conversation_from_row(row) for row in rows]

    def rename(self, conversation_id: int, title: str | None) -> Conversation:
        """Set the title (blank = none, so :meth:`auto_title` may fill it). Does not reorder the list: only new
        messages count as activity."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE conversations SET title = ? WHERE id = ?", (clean_title(title), conversation_id)
            )
        if cursor.rowcount == 0:
            raise KeyError(f"no conversation {conversation_id}")
        return self.get(conversation_id)

    def update_settings(
        self,
        conversation_id: int,
        *,
        system_prompt: str | None = UNSET,
        temperature: float | None = UNSET,
        top_p: float | None = UNSET,
        max_tokens: int | None = UNSET,
    ) -> Conversation:
        """Change the given settings only; ``None`` puts one back to the daemon default. Validated first, so a
        bad value changes nothing: temperature in [0, 2], top_p in (0, 1], max_tokens at least 1."""
        validate_settings(temperature, top_p, max_tokens)
        changes = {
            name: value
            for name, value in (
                ("system_prompt", system_prompt),
                ("temperature", temperature),
                ("top_p", top_p),
                ("max_tokens", max_tokens),
            )
            if value is not UNSET
        }
        if "system_prompt" in changes:
            changes["system_prompt"] = clean_prompt(cast("str | None", changes["system_prompt"]))
        self.get(conversation_id)
        if changes:
            assignments = ", ".join(f"{name} = ?" for name in changes)
            with self._tx() as db:
                db.execute(f"UPDATE conversations SET {assignments} WHERE id = ?", (*changes.values(), conversation_id))
        return self.get(conversation_id)

    def delete(self, conversation_id: int) -> None:
        """Delete a conversation and (by cascade) its messages; an unknown id is not an error."""
        with self._tx() as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def auto_title(self, conversation_id: int) -> str | None:
        """Give an untitled conversation the first line of its first user message (at most 60 characters) and
        return the title; a conversation with a title keeps it. ``None`` while there is no user message."""
        conversation = self.get(conversation_id)
        if conversation.title:
            return conversation.title
        rows = self._rows(
            "SELECT content FROM messages WHERE conversation_id = ? AND role = 'user' ORDER BY position",
            (conversation_id,),
        )
        for (content,) in rows:
            line = next((line.strip() for line in content.splitlines() if line.strip()), "")
            if line:
                title = clean_title(line) or ""
                if len(title) > TITLE_MAX:
                    title = title[: TITLE_MAX - 1].rstrip() + "…"
                with self._tx() as db:
                    db.execute(
                        "UPDATE conversations SET title = ? WHERE id = ? AND title IS NULL", (title, conversation_id)
                    )
                return self.get(conversation_id).title
        return None

    # -- messages --------------------------------------------------------------------

    def _get_message(self, message_id: int) -> Message:
        rows = self._rows(f"SELECT {MSG_COLUMNS} FROM messages WHERE id = ?", (message_id,))
        if not rows:
            raise KeyError(f"no message {message_id}")
        return message_from_row(rows[0])

    def add_message(self, conversation_id: int, role: Role, content: str, stats: ReplyStats | None = None) -> Message:
        """Append a turn at the end and mark the conversation active. A streamed reply starts as an empty
        assistant message that :meth:`update_message` fills."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if stats is not None and role != "assistant":
            raise ValueError("only assistant messages carry reply stats")
        now = self._now()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone() is None:
                raise KeyError(f"no conversation {conversation_id}")
            (position,) = db.execute(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM messages WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            cursor = db.execute(
                f"INSERT INTO messages (conversation_id, position, role, content, created, {', '.join(STAT_COLUMNS)})"
                f" VALUES (?, ?, ?, ?, ?{', ?' * len(STAT_COLUMNS)})",
                (conversation_id, position, role, content, now, *stat_values(stats)),
            )
            db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))
            mid = cursor.lastrowid
        assert mid is not None
        return self._get_message(mid)

    def update_message(self, message_id: int, *, content: str = UNSET, stats: ReplyStats | None = UNSET) -> Message:
        """Replace a message's content and/or stats (``stats=None`` clears them): the window streams a reply into
        one message and saves the final text and stats when it ends."""
        current = self._get_message(message_id)
        if stats is not UNSET and stats is not None and current.role != "assistant":
            raise ValueError("only assistant messages carry reply stats")
        with self._tx() as db:
            if content is not UNSET:
                db.execute("UPDATE messages SET content = ? WHERE id = ?", (content, message_id))
            if stats is not UNSET:
                db.execute(
                    f"UPDATE messages SET {', '.join(f'{c} = ?' for c in STAT_COLUMNS)} WHERE id = ?",
                    (*stat_values(stats), message_id),
                )
            db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (self._now(), current.conversation_id))
        return self._get_message(message_id)

    def messages(self, conversation_id: int) -> builtins.list[Message]:
        """The conversation's turns in order."""
        self.get(conversation_id)
        rows = self._rows(
            f"SELECT {MSG_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY position", (conversation_id,)
        )
        return [message_from_row(row) for row in rows]

    def delete_last_reply(self, conversation_id: int) -> bool:
        """For Regenerate: remove the last message if it is an assistant reply. True when one was removed."""
        self.get(conversation_id)
        with self._tx() as db:
            cursor = db.execute(
                "DELETE FROM messages WHERE id = (SELECT id FROM messages WHERE conversation_id = ?"
                " ORDER BY position DESC LIMIT 1) AND role = 'assistant'",
                (conversation_id,),
            )
        return cursor.rowcount > 0

    def chat_messages(self, conversation_id: int) -> builtins.list[dict[str, str]]:
        """The ``messages`` list for the next chat request: the system prompt first (if set), then the turns.
        Replies that ended in an error, and empty replies (cancelled before a token), are left out so the model
        never sees them as something it said."""
        conversation = self.get(conversation_id)
        result = [{"role": "system", "content": conversation.system_prompt}] if conversation.system_prompt else []
        for message in self.messages(conversation_id):
            if message.role == "assistant" and ((message.stats and message.stats.error) or not message.content):
                continue
            result.append({"role": message.role, "content": message.content})
        return result
