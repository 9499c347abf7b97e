"""Conversation search for the chat window's store: a full-text index (SQLite FTS5) over titles and message text,
or a LIKE scan where the SQLite build has no FTS5.

A LIKE scan reads every message for every search: fine for a week of chats, slow for months of them. The index
is two external-content FTS5 tables (the text stays in ``conversations`` and ``messages`` only), kept in step by
triggers. They use the trigram tokenizer, so a search means what it meant as a LIKE scan: the words typed, as
typed, anywhere in a title or a message (so a half-typed last word matches too), ignoring case. Fewer than
three characters cannot use trigrams, so such searches scan, as every search does without FTS5.

A search is never FTS syntax: the whole text becomes one quoted FTS5 string, so quotes, AND/OR/NOT/NEAR, ``*``,
``^``, parentheses and column filters typed by the user are just characters to find.

The index is set up when a store opens (``ensure_index``) rather than as a numbered schema step: it exists only
where the SQLite build can keep it, and an older trayllm can still open the file. A file last opened without FTS5
has its triggers dropped (they would fail every write there), and the index is rebuilt from the tables the next
time FTS5 is available.
"""

from __future__ import annotations

import sqlite3
from typing import Any

# (FTS table, content table, indexed column): message text and conversation titles, each by its table's rowid
_INDEXED = (("messages_fts", "messages", "content"), ("titles_fts", "conversations", "title"))
TRIGRAM_MIN = 3  # trigrams need three characters; a shorter search scans


def _setup_statements() -> list[str]:
    """The FTS tables and the triggers that keep each in step with its table (``IF NOT EXISTS``: reruns are safe)."""
    statements = []
    for fts, table, column in _INDEXED:
        statements.append(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5({column}, content='{table}', content_rowid='id',"
            " tokenize='trigram')"
        )
        insert = f"INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column});"
        delete = f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column});"
        statements += [
            f"CREATE TRIGGER IF NOT EXISTS {fts}_insert AFTER INSERT ON {table} BEGIN {insert} END",
            f"CREATE TRIGGER IF NOT EXISTS {fts}_delete AFTER DELETE ON {table} BEGIN {delete} END",
            f"CREATE TRIGGER IF NOT EXISTS {fts}_update AFTER UPDATE OF {column} ON {table}"
            f" BEGIN {delete} {insert} END",
        ]
    return statements


def _trigger_names() -> list[str]:
    return [f"{fts}_{event}" for fts, _, _ in _INDEXED for event in ("insert", "delete", "update")]


def fts5_available(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite build has FTS5 with the trigram tokenizer (SQLite 3.34 or later)."""
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.trayllm_fts5_probe USING fts5(x, tokenize='trigram')")
    except sqlite3.OperationalError:
        return False
    conn.execute("DROP TABLE temp.trayllm_fts5_probe")
    return True


def _present(db: sqlite3.Connection) -> set[str]:
    return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")}


def index_ready(db: sqlite3.Connection, enabled: bool) -> bool:
    """Whether ``ensure_index`` has nothing to do (so opening a store writes nothing)."""
    if enabled:
        return {fts for fts, _, _ in _INDEXED} | set(_trigger_names()) <= _present(db)
    return not set(_trigger_names()) & _present(db)


def ensure_index(db: sqlite3.Connection, enabled: bool) -> None:
    """Inside a write transaction: with ``enabled``, create whatever part of the index is missing and rebuild it
    from the tables (a database from before the index, or one last written without FTS5); without, drop the
    triggers so writes work where FTS5 is missing."""
    if index_ready(db, enabled):
        return
    if not enabled:
        for name in _trigger_names():
            db.execute(f"DROP TRIGGER IF EXISTS {name}")
        return
    for statement in _setup_statements():
        db.execute(statement)
    for fts, _, _ in _INDEXED:
        db.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def fts_string(text: str) -> str:
    """``text`` as one FTS5 string: in double quotes, its own doubled, so no part of it is query syntax."""
    return '"' + text.replace('"', '""') + '"'


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` literally anywhere: ``%`` and ``_`` typed by the user are not wildcards."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def matching(search: str, *, full_text: bool) -> tuple[str, tuple[Any, ...]]:
    """The condition on ``conversations c`` (and its parameters) that keeps those whose title or any message
    contains ``search``: through the index when ``full_text`` and the search is long enough, else by LIKE."""
    if full_text and len(search) >= TRIGRAM_MIN:
        return (
            "c.id IN (SELECT rowid FROM titles_fts WHERE titles_fts MATCH ?1"
            " UNION SELECT m.conversation_id FROM messages m"
            " WHERE m.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1))",
            (fts_string(search),),
        )
    return (
        "(c.title LIKE ?1 ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id"
        " AND m.content LIKE ?1 ESCAPE '\\'))",
        (like_pattern(search),),
    )
