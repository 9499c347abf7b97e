"""What one reply cost (``ReplyStats``) and the one line that shows it, in the window, its exports and the terminal.

One formatter for every front end, so a reply's cost reads the same wherever it is shown: the window
puts the line under each reply (the request id a Markdown link to Kibana when ``kibana_url`` is set), an
export keeps it in italics, and ``ask`` and the terminal chat print it to stderr with the wall time added.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from urllib.parse import quote

from trayllm import api


@dataclass(frozen=True)
class ReplyStats:
    """What one assistant reply cost, as the daemon reported it; every field is optional because a reply
    that failed or was cancelled early has only some of them."""

    request_id: str | None = None
    model: str | None = None
    first_token_ms: float | None = None
    tokens_per_second: float | None = None
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    vram_peak_bytes: int | None = None
    finish_reason: str | None = None
    error: str | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))


def reported_stats(
    timings: api.Timings | None,
    usage: api.Usage | None,
    *,
    finish_reason: str | None,
    request_id: str | None,
    model: str | None = None,
) -> ReplyStats:
    """The stats of a finished reply from what the daemon sent with it (either part may be missing)."""
    return ReplyStats(
        request_id=request_id,
        model=model,
        first_token_ms=None if timings is None else timings.first_token_ms,
        tokens_per_second=None if timings is None else timings.tokens_per_second,
        completion_tokens=None if usage is None else usage.completion_tokens,
        prompt_tokens=None if usage is None else usage.prompt_tokens,
        vram_peak_bytes=None if timings is None else timings.vram_peak_bytes,
        finish_reason=finish_reason,
    )


def stats_line(
    stats: ReplyStats, kibana_url: str = "", *, total_s: float | None = None, max_tokens_capped: bool = False
) -> str:
    """One line for a reply's stats, e.g. ``first token 312 ms · 48 tokens · 15.2 tok/s · req 3f2a1b9c``, from
    what is known. ``total_s`` (the wall time the terminal measured) and ``max_tokens_capped`` are added when
    given; with ``kibana_url`` the request id is a Markdown link to its record in Kibana's Discover."""
    parts: list[str] = []
    if stats.first_token_ms is not None:
        parts.append(f"first token {stats.first_token_ms:.0f} ms")
    if stats.completion_tokens is not None:
        parts.append(f"{stats.completion_tokens} tokens")
    if stats.tokens_per_second is not None:
        parts.append(f"{stats.tokens_per_second:.1f} tok/s")
    if total_s is not None:
        parts.append(f"{total_s:.2f} s")
    if stats.vram_peak_bytes is not None:
        gib = stats.vram_peak_bytes / 2**30
        parts.append(f"peak VRAM {gib:.2f} GiB" if gib >= 1 else f"peak VRAM {stats.vram_peak_bytes / 2**20:.0f} MiB")
    if stats.finish_reason == "length":
        parts.append("cut at max_tokens")
    elif stats.finish_reason not in (None, "stop"):
        parts.append(f"finish {stats.finish_reason}")
    if max_tokens_capped:
        parts.append("max_tokens capped: daemon busy")
    if stats.error:
        parts.append(f"error: {' '.join(stats.error.split())}")
    if stats.request_id:
        short = f"req {stats.request_id[:8]}"
        if kibana_url:
            query = quote(f"(query:(language:kuery,query:'event.id:\"{stats.request_id}\"'))", safe="")
            short = f"[{short}]({kibana_url.rstrip('/')}/app/discover#/?_a={query})"
        parts.append(short)
    return " · ".join(parts)
