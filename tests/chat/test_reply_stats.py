"""The one reply-stats line: the window's, the export's and the terminal's, from what the daemon reported."""

from __future__ import annotations

from trayllm import api
from trayllm.chat.reply_stats import ReplyStats, reported_stats, stats_line


def test_stats_line_links_the_request_to_kibana_when_configured() -> None:
    stats = ReplyStats(
        request_id="3f2a1b9c0000",
        first_token_ms=312.4,
        completion_tokens=48,
        tokens_per_second=15.23,
        vram_peak_bytes=3 * 2**30,
    )
    assert stats_line(stats) == "first token 312 ms · 48 tokens · 15.2 tok/s · peak VRAM 3.00 GiB · req 3f2a1b9c"
    linked = stats_line(stats, "http://127.0.0.1:5601")
    assert "[req 3f2a1b9c](http://127.0.0.1:5601/app/discover#/?_a=" in linked and "3f2a1b9c0000" in linked


def test_the_terminal_extras_take_their_place_in_the_same_line() -> None:
    stats = ReplyStats(
        request_id="3f2a1b9c0000",
        first_token_ms=312.4,
        completion_tokens=64,
        tokens_per_second=15.23,
        vram_peak_bytes=5 * 2**20,
        finish_reason="length",
    )
    assert stats_line(stats, total_s=2.314, max_tokens_capped=True) == (
        "first token 312 ms · 64 tokens · 15.2 tok/s · 2.31 s · peak VRAM 5 MiB · cut at max_tokens"
        " · max_tokens capped: daemon busy · req 3f2a1b9c"
    )


def test_a_failed_or_cancelled_reply_says_how_it_ended() -> None:
    assert stats_line(ReplyStats(finish_reason="error", error="engine_error:\n  out of\tmemory")) == (
        "finish error · error: engine_error: out of memory"
    )
    assert stats_line(ReplyStats(finish_reason="cancelled", request_id="ab")) == "finish cancelled · req ab"
    assert stats_line(ReplyStats(finish_reason="stop")) == ""


def test_reported_stats_take_what_the_daemon_sent() -> None:
    timings = api.Timings(
        request_id="r1",
        queue_ms=1.0,
        first_token_ms=250.0,
        total_ms=900.0,
        tokens_per_second=20.0,
        vram_peak_bytes=1234,
    )
    usage = api.Usage(prompt_tokens=7, completion_tokens=9, total_tokens=16)
    assert reported_stats(timings, usage, finish_reason="stop", request_id="r1", model="m") == ReplyStats(
        request_id="r1",
        model="m",
        first_token_ms=250.0,
        tokens_per_second=20.0,
        completion_tokens=9,
        prompt_tokens=7,
        vram_peak_bytes=1234,
        finish_reason="stop",
    )
    assert reported_stats(None, None, finish_reason=None, request_id=None).is_empty()
