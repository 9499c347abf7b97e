"""The terminal's timings line: the daemon's figures where it sent them, else what the client measured."""

from __future__ import annotations

from trayllm import api
from trayllm.chat.terminal import Reply, timings_line

USAGE = api.Usage(prompt_tokens=5, completion_tokens=48, total_tokens=53)


def test_the_daemons_figures_come_first() -> None:
    timings = api.Timings(
        request_id="3f2a1b9c0d4e",
        queue_ms=0.0,
        first_token_ms=312.4,
        total_ms=2314.0,
        tokens_per_second=15.23,
        max_tokens_capped=True,
        vram_peak_bytes=2 * 2**30,
    )
    reply = Reply("hi", "length", USAGE, timings, "ignored", first_token_s=9.0, total_s=99.0)
    assert timings_line(reply) == (
        "[first token 312 ms · 48 tokens · 15.2 tok/s · 2.31 s · peak VRAM 2.00 GiB"
        " · cut at max_tokens · max_tokens capped: daemon busy · req 3f2a1b9c]"
    )


def test_without_the_daemons_timings_the_client_measures() -> None:
    reply = Reply("hi", "stop", USAGE, None, "3f2a1b9c0d4e", first_token_s=0.5, total_s=2.85)
    assert timings_line(reply) == "[first token 500 ms · 48 tokens · 20.0 tok/s · 2.85 s · req 3f2a1b9c]"
    bare = Reply("", None, None, None, None, first_token_s=None, total_s=0.1)
    assert timings_line(bare) == "[0.10 s]"


def test_what_the_daemon_sent_cannot_drive_the_terminal() -> None:
    reply = Reply("hi", "stop", None, None, "\x1b[2Jabcdefgh", first_token_s=None, total_s=1.0)
    assert "\x1b" not in timings_line(reply)
