"""The window's transcript without Qt: who said what, each reply's stats, the reply streaming now, which messages a
long conversation shows first and how often the streaming reply is rendered again."""

from __future__ import annotations

from trayllm.chat.reply_stats import ReplyStats
from trayllm.chat.store import ConversationStore
from trayllm.chat.transcript import FAILED, Backlog, RenderPacer, live_block, message_blocks


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
    assert live_block("m", "") == "**m**\n\n…"  # until its first token
    assert live_block("m", "Hel") == "**m**\n\nHel"


def test_the_backlog_hands_out_the_newest_page_first_and_keeps_order_within_it() -> None:
    backlog = Backlog([f"b{i}" for i in range(7)], page=3)
    assert backlog.take_newest() == ["b4", "b5", "b6"]
    assert len(backlog) == 4
    assert backlog.take_newest() == ["b1", "b2", "b3"]
    assert backlog.take_newest() == ["b0"]
    assert backlog.take_newest() == [] and len(backlog) == 0


def test_the_pacer_allows_one_render_per_interval_and_one_at_once_after_a_reset() -> None:
    now = [100.0]
    pacer = RenderPacer(0.5, clock=lambda: now[0])  # times exact in binary
    assert pacer.wait_s() == 0  # nothing rendered yet: the first token renders
    pacer.rendered()
    now[0] += 0.25
    assert pacer.wait_s() == 0.25  # tokens now are appended as plain text
    now[0] += 0.25
    assert pacer.wait_s() == 0
    pacer.rendered()
    pacer.reset()  # a new reply: its first token replaces the placeholder at once
    assert pacer.wait_s() == 0
