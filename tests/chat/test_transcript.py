"""The window's transcript as Markdown, without Qt: who said what, each reply's stats, the reply streaming now."""

from __future__ import annotations

from trayllm.chat.reply_stats import ReplyStats
from trayllm.chat.store import ConversationStore
from trayllm.chat.transcript import FAILED, SEPARATOR, message_blocks, transcript_markdown


def test_blocks_show_the_turns_with_their_stats_and_failures(store: ConversationStore, stats: ReplyStats) -> None:
    conversation = store.create()
    store.add_message(conversation.id, "system", "be terse")
    store.add_message(conversation.id, "user", "Capital of France?")
    store.add_message(conversation.id, "assistant", "Paris.", stats)
    store.add_message(conversation.id, "user", "And Spain?")
    failed = ReplyStats(error="engine_error: boom", finish_reason="error")
    store.add_message(conversation.id, "assistant", "Mad", failed)
    store.add_message(conversation.id, "assistant", "plain", ReplyStats(finish_reason="stop"))
    blocks = message_blocks(store.messages(conversation.id), model_name="now-loaded", kibana_url="http://k:5601")
    assert blocks[0] == "**You**\n\nCapital of France?"
    assert blocks[1].startswith("**smollm2**\n\nParis.\n\n_first token 312 ms") and "](http://k:5601/app/" in blocks[1]
    assert blocks[3] == f"**now-loaded**\n\nMad\n\n{FAILED}\n\n_finish error · error: engine_error: boom_"
    assert blocks[4] == "**now-loaded**\n\nplain"  # nothing to say: no empty italics
    assert len(blocks) == 5  # the system prompt is not a turn


def test_the_streaming_reply_is_left_out_of_the_blocks_and_shown_after_them(store: ConversationStore) -> None:
    conversation = store.create()
    store.add_message(conversation.id, "user", "hi")
    streaming = store.add_message(conversation.id, "assistant", "")
    blocks = message_blocks(store.messages(conversation.id), model_name="m", streaming_id=streaming.id)
    assert blocks == ["**You**\n\nhi"]
    assert transcript_markdown(blocks, model_name="m", streaming="") == f"**You**\n\nhi{SEPARATOR}**m**\n\n…"
    assert transcript_markdown(blocks, model_name="m", streaming="Hel") == f"**You**\n\nhi{SEPARATOR}**m**\n\nHel"
    assert transcript_markdown(blocks, model_name="m") == "**You**\n\nhi"
