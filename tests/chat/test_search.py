"""Conversation search (issue 18): through the FTS5 index over titles and message text, kept in step with every
write, built for a database from before it, never tripped by FTS syntax in what the user types, and answering as
the LIKE scan does (which a SQLite build without FTS5 falls back to; forced here with ``full_text=False``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from trayllm.chat.search import fts5_available
from trayllm.chat.store import _MIGRATIONS, ConversationStore

HOSTILE = [
    '"', '""', '"hello', 'say "hello"', "AND", "OR", "NOT", "a OR b", "bye AND", "NEAR(a b)", "NEAR", "x*", "*",
    "(", ")", "(bye)", "title:foo", "content:", "messages_fts:x", "^start", "-", "+", "'", ";", "{a b}", "\\",
    "\x00", "nul\x00l", "%", "_", "e_c", "ab%", "😀", "é", "DROP TABLE messages",
]  # fmt: skip
CONTENT = 'say "hello" AND (bye) OR NEAR x* title:foo ^start -+; {a b} \\ 100% snake_case émoji 😀'

TEXTS = {
    "titled": "Rust borrow checker",
    "hostile": "symbols\n" + CONTENT,
    "reply": "what is a monad?\nA monoid in the category of endofunctors.",
    "plain": "notes\nhello there, BYE now",
}  # what each conversation holds, for a search by hand


def _need_fts5() -> None:
    with sqlite3.connect(":memory:") as probe:
        if not fts5_available(probe):
            pytest.skip("this SQLite build has no FTS5 (the LIKE fallback is tested on its own)")


@pytest.fixture
def paths(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield tmp_path / "fts.db", tmp_path / "like.db"


def fill(store: ConversationStore) -> dict[str, int]:
    """The same conversations in any store, by name."""
    ids = {}
    ids["titled"] = store.create("Rust borrow checker").id
    ids["hostile"] = store.create("symbols").id
    store.add_message(ids["hostile"], "user", CONTENT)
    ids["reply"] = store.create().id
    store.add_message(ids["reply"], "user", "what is a monad?")
    store.add_message(ids["reply"], "assistant", "A monoid in the category of endofunctors.")
    ids["plain"] = store.create("notes").id
    store.add_message(ids["plain"], "user", "hello there, BYE now")
    return ids


def names(store: ConversationStore, ids: dict[str, int], query: str) -> set[str]:
    found = {c.id for c in store.list(query)}
    return {name for name, cid in ids.items() if cid in found}


def index_is_sound(store: ConversationStore) -> None:
    """FTS5's own check of each index against its table (rank 1: the external content too)."""
    with sqlite3.connect(store.path) as raw:
        for table in ("messages_fts", "titles_fts"):
            raw.execute(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)")


def test_the_index_finds_conversations_by_title_and_by_message_text(paths) -> None:
    _need_fts5()
    with ConversationStore(paths[0]) as store:
        assert store.full_text
        ids = fill(store)
        assert names(store, ids, "borrow") == {"titled"}
        assert names(store, ids, "ENDOFUNCTOR") == {"reply"}  # a reply's text, any case
        assert names(store, ids, "mona") == {"reply"}  # monad and monoid: a half-typed word matches
        assert names(store, ids, "hello") == {"hostile", "plain"}
        assert names(store, ids, "borrow checker") == {"titled"} and names(store, ids, "rust checker") == set()
        assert names(store, ids, "by") == {"hostile", "plain"}  # under three characters: scanned, same meaning
        index_is_sound(store)


@pytest.mark.parametrize("query", HOSTILE)
def test_a_hostile_search_never_raises_and_both_ways_agree(paths, query: str) -> None:
    with ConversationStore(paths[0]) as fts, ConversationStore(paths[1], full_text=False) as like:
        assert not like.full_text
        fts_ids, like_ids = fill(fts), fill(like)
        found = names(fts, fts_ids, query)
        assert found == names(like, like_ids, query)
        literal = query.replace("\x00", "").strip().lower()
        assert found == {name for name, text in TEXTS.items() if literal in text.lower()}


def test_the_index_follows_edits_renames_and_deletes(paths) -> None:
    _need_fts5()
    with ConversationStore(paths[0]) as store:
        conversation = store.create("first title")
        reply = store.add_message(conversation.id, "assistant", "")  # a reply starts empty and is filled at its end
        store.update_message(reply.id, content="the streamed zebra")
        assert [c.id for c in store.list("zebra")] == [conversation.id]
        store.rename(conversation.id, "second title")
        assert store.list("first") == [] and [c.id for c in store.list("second")] == [conversation.id]
        store.delete_last_reply(conversation.id)
        assert store.list("zebra") == []
        store.add_message(conversation.id, "user", "giraffe")
        store.delete(conversation.id)  # its messages go by cascade, and out of the index with them
        assert store.list("giraffe") == [] and store.list("second") == []
        index_is_sound(store)


def test_a_database_from_before_the_index_gets_it_built_when_opened(tmp_path: Path) -> None:
    _need_fts5()
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:  # what the first release wrote: schema version 1, no index
        for statement in _MIGRATIONS[0]:
            raw.execute(statement)
        raw.execute("INSERT INTO conversations (id, title, created, updated) VALUES (1, 'Old chat', 1, 1)")
        raw.execute(
            "INSERT INTO messages (conversation_id, position, role, content, created)"
            " VALUES (1, 0, 'user', 'an elephant question', 1)"
        )
        raw.execute("PRAGMA user_version = 1")
    with ConversationStore(path) as store:
        assert store.full_text
        assert [c.id for c in store.list("elephant")] == [1] and [c.id for c in store.list("old ch")] == [1]
        index_is_sound(store)
    with sqlite3.connect(path) as raw:
        tables = {name for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"messages_fts", "titles_fts"} <= tables


def test_a_file_written_without_fts5_is_indexed_again_when_fts5_is_back(tmp_path: Path) -> None:
    _need_fts5()
    path = tmp_path / "moved.db"
    with ConversationStore(path) as store:
        kept = store.create("kept")
        store.add_message(kept.id, "user", "first words")
    with ConversationStore(path, full_text=False) as store:  # as a Python whose SQLite lacks FTS5 opens it
        store.add_message(kept.id, "user", "written without the index")  # writes work: no trigger needs FTS5
        store.rename(kept.id, "renamed")
        gone = store.create("gone")
        store.add_message(gone.id, "user", "first words too")
        store.delete(gone.id)
        assert [c.id for c in store.list("without the")] == [kept.id]
    with ConversationStore(path) as store:
        assert [c.id for c in store.list("without the")] == [kept.id]
        assert [c.id for c in store.list("renamed")] == [kept.id] and store.list("kept") == []
        assert [c.id for c in store.list("first words")] == [kept.id]
        index_is_sound(store)
