"""The chat window's conversation store, on real SQLite files under the test's own XDG dirs."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from trayllm import config
from trayllm.chat.reply_stats import ReplyStats
from trayllm.chat.store import ConversationStore, default_db_path
from trayllm.errors import ConfigError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_path_follows_xdg_data_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    assert config.load_settings().data_path == Path(os.environ["XDG_DATA_HOME"]) / "trayllm"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "elsewhere"))
    assert default_db_path() == tmp_path / "elsewhere" / "trayllm" / "conversations.db"
    monkeypatch.setenv("TRAYLLM_DATA_DIR", str(tmp_path / "mine"))
    assert config.load_settings().data_path == tmp_path / "mine"


def test_file_is_private_and_history_survives_reopen(stats: ReplyStats):
    with ConversationStore() as first:
        conversation = first.create("Kept", temperature=0.7)
        first.add_message(conversation.id, "user", "hello")
        first.add_message(conversation.id, "assistant", "hi", stats)
    path = default_db_path()
    assert path.parent == Path(os.environ["XDG_DATA_HOME"]) / "trayllm"
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600
    path.parent.chmod(0o755)
    with ConversationStore(config.load_settings().data_path / "conversations.db") as second:
        assert mode(path.parent) == 0o700, "the window passes the path explicitly; still our directory"
        assert second.list() == [second.get(conversation.id)]
        assert second.get(conversation.id).temperature == 0.7
        assert [(m.role, m.content, m.stats) for m in second.messages(conversation.id)] == [
            ("user", "hello", None),
            ("assistant", "hi", stats),
        ]
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (1,)
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_crud_and_newest_updated_first(store: ConversationStore, stats: ReplyStats):
    a = store.create("  First   chat ")
    b = store.create()
    assert (a.title, b.title) == ("First chat", None)
    assert a.created.tzinfo is not None
    assert [c.id for c in store.list()] == [b.id, a.id]
    store.add_message(a.id, "user", "bump")
    assert [c.id for c in store.list()] == [a.id, b.id]
    assert store.rename(b.id, "Second").title == "Second"
    assert [c.id for c in store.list()] == [a.id, b.id], "renaming is not activity"
    assert store.rename(b.id, "   ").title is None
    store.delete(b.id)
    assert [c.id for c in store.list()] == [a.id]
    store.delete(b.id)  # idempotent
    with pytest.raises(KeyError):
        store.get(b.id)
    with pytest.raises(KeyError):
        store.rename(b.id, "x")
    with pytest.raises(KeyError):
        store.add_message(b.id, "user", "x")
    with pytest.raises(ValueError, match="role"):
        store.add_message(a.id, "tool", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="assistant"):
        store.add_message(a.id, "user", "x", stats)


def test_search_title_and_content_case_insensitive_with_literal_wildcards(store: ConversationStore):
    titled = store.create("Rust borrow checker")
    percent = store.create()
    store.add_message(percent.id, "user", "what is 100% of 7?")
    underscore = store.create()
    store.add_message(underscore.id, "assistant", "use snake_case names")
    plain = store.create()
    store.add_message(plain.id, "user", "100 percent, snakeXcase")

    def ids(query: str | None) -> set[int]:
        return {c.id for c in store.list(query)}

    assert ids("BORROW") == {titled.id}
    assert ids("100%") == {percent.id}
    assert ids("%") == {percent.id}
    assert ids("e_c") == {underscore.id}
    assert ids("_") == {underscore.id}
    assert ids("100") == {percent.id, plain.id}
    assert ids("nothing here") == set()
    assert ids(None) == ids("  ") == {titled.id, percent.id, underscore.id, plain.id}


def test_delete_cascades_to_messages(store: ConversationStore):
    conversation = store.create()
    store.add_message(conversation.id, "user", "q")
    store.add_message(conversation.id, "assistant", "a")
    store.delete(conversation.id)
    with sqlite3.connect(store.path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)


def test_settings_are_validated_and_none_means_daemon_default(store: ConversationStore):
    conversation = store.create(system_prompt="Be terse.", temperature=0.5, top_p=1, max_tokens=64)
    assert (conversation.system_prompt, conversation.temperature, conversation.top_p, conversation.max_tokens) == (
        "Be terse.",
        0.5,
        1,
        64,
    )
    changed = store.update_settings(conversation.id, temperature=None, max_tokens=128)
    assert (changed.system_prompt, changed.temperature, changed.top_p, changed.max_tokens) == (
        "Be terse.",
        None,
        1,
        128,
    )
    assert store.update_settings(conversation.id, system_prompt="  ").system_prompt is None
    for kwargs, field in (
        ({"temperature": 2.1}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.01}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
    ):
        with pytest.raises(ValueError, match=field):
            store.update_settings(conversation.id, **kwargs)
        with pytest.raises(ValueError, match=field):
            store.create(**kwargs)
    assert store.get(conversation.id).max_tokens == 128, "a rejected change changes nothing"
    assert store.update_settings(conversation.id, temperature=0, top_p=0.01, max_tokens=1).temperature == 0
    with pytest.raises(KeyError):
        store.update_settings(9999, temperature=1)


def test_streaming_updates_one_message_then_regenerate(store: ConversationStore, stats: ReplyStats):
    conversation = store.create()
    store.add_message(conversation.id, "user", "count")
    reply = store.add_message(conversation.id, "assistant", "")
    for partial in ("1", "1 2", "1 2 3"):
        store.update_message(reply.id, content=partial)
    final = store.update_message(reply.id, stats=stats)
    assert (final.id, final.position, final.content, final.stats) == (reply.id, 1, "1 2 3", stats)
    assert [m.id for m in store.messages(conversation.id)] == [reply.id - 1, reply.id]
    assert store.update_message(reply.id, stats=None).stats is None
    with pytest.raises(KeyError):
        store.update_message(9999, content="x")

    assert store.delete_last_reply(conversation.id) is True
    assert [m.role for m in store.messages(conversation.id)] == ["user"]
    assert store.delete_last_reply(conversation.id) is False, "a trailing user message stays"
    again = store.add_message(conversation.id, "assistant", "1 2 3 4")
    assert again.position == 1


def test_chat_messages_skip_failed_replies(store: ConversationStore, stats: ReplyStats):
    conversation = store.create(system_prompt="You are terse.")
    store.add_message(conversation.id, "user", "hi")
    store.add_message(conversation.id, "assistant", "partial", ReplyStats(error="engine_error: boom"))
    store.add_message(conversation.id, "user", "hi again")
    store.add_message(conversation.id, "assistant", "hello", stats)
    store.add_message(conversation.id, "user", "and?")
    assert store.chat_messages(conversation.id) == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
        {"role": "user", "content": "hi again"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "and?"},
    ]
    bare = store.create()
    store.add_message(bare.id, "user", "x")
    assert store.chat_messages(bare.id) == [{"role": "user", "content": "x"}]


def test_auto_title_uses_first_user_line(store: ConversationStore):
    conversation = store.create()
    assert store.auto_title(conversation.id) is None
    store.add_message(conversation.id, "user", "\n  Explain   WAL mode  \nin detail")
    assert store.auto_title(conversation.id) == "Explain WAL mode"
    assert store.get(conversation.id).title == "Explain WAL mode"
    long = store.create()
    store.add_message(long.id, "user", "word " * 30)
    title = store.auto_title(long.id)
    assert title is not None and len(title) <= 60 and title.endswith("…")
    named = store.create("Mine")
    store.add_message(named.id, "user", "something else")
    assert store.auto_title(named.id) == "Mine"


def test_newer_schema_is_refused_with_one_line():
    path = default_db_path()
    ConversationStore().close()
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA user_version = 2")
    with pytest.raises(ConfigError) as caught:
        ConversationStore()
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "newer" in message and "move the file away" in message


def test_corrupt_file_is_refused_with_one_line(tmp_path: Path):
    tmp_path.chmod(0o755)
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError) as caught:
        ConversationStore(path)
    assert mode(tmp_path) == 0o755, "a directory the caller chose is left alone"
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "move the file away" in message


def test_writes_from_several_threads(store: ConversationStore):
    conversation = store.create()
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(20):
                store.add_message(conversation.id, "user", f"{n}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [m.position for m in store.messages(conversation.id)] == list(range(80))
