"""Load generator: streamed requests at fixed concurrency levels, measured from the client's side.

Per level: first-token latency p50/p99 (nearest rank), per-stream decode speed (completion
tokens after the first / time after the first token, mean over requests), aggregate decode
speed (all completion tokens / wall time of the level) and errors. The same arithmetic serves the
daemon's socket (trayllm.client.DaemonClient) and any OpenAI-compatible URL (trayllm.bench.openai_url),
so figures for trayllm and its peers compare like for like.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from trayllm import errors
from trayllm.client import Done, StreamEvent, TextDelta
from trayllm.slo.percentile import percentile

# No way to ignore EOS through the API, so ask for answers longer than max_tokens.
PROMPTS = (
    "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    "Write a long story about a robot learning to bake bread in a small village.",
    "Write a long story about two friends crossing a desert on camels.",
    "Write a long story about a cat who becomes the mayor of a harbour town.",
    "Write a long story about a scientist who discovers a new colour.",
    "Write a long story about a child who builds a boat from old doors.",
    "Write a long story about a library that is open only at night.",
    "Write a long story about a train that never stops at the same station twice.",
)


class ChatStreamer(Protocol):
    """What the bench drives: the daemon's client or an OpenAI-compatible URL's, one per worker thread."""

    def stream_chat(self, request: Mapping[str, Any]) -> Iterable[StreamEvent]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RequestResult:
    """One streamed request as the client saw it."""

    first_token_s: float | None
    total_s: float
    completion_tokens: int
    error: str | None = None

    @property
    def decode_tokens_per_second(self) -> float | None:
        if self.error or self.first_token_s is None or self.completion_tokens < 2:
            return None
        decode_s = self.total_s - self.first_token_s
        return (self.completion_tokens - 1) / decode_s if decode_s > 0 else None


@dataclass(frozen=True)
class LevelResult:
    """One concurrency level, summarised."""

    concurrency: int
    requests: int
    errors: int
    wall_s: float
    completion_tokens: int
    first_token_p50_ms: float | None
    first_token_p99_ms: float | None
    decode_tokens_per_second_per_stream: float | None
    aggregate_decode_tokens_per_second: float | None
    error_examples: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(concurrency: int, results: Sequence[RequestResult], wall_s: float) -> LevelResult:
    ok = [r for r in results if r.error is None]
    ttft_ms = [r.first_token_s * 1000 for r in ok if r.first_token_s is not None]
    speeds = [s for r in ok if (s := r.decode_tokens_per_second) is not None]
    tokens = sum(r.completion_tokens for r in ok)
    p50, p99 = percentile(ttft_ms, 50), percentile(ttft_ms, 99)
    return LevelResult(
        concurrency=concurrency,
        requests=len(results),
        errors=len(results) - len(ok),
        wall_s=round(wall_s, 3),
        completion_tokens=tokens,
        first_token_p50_ms=None if p50 is None else round(p50, 1),
        first_token_p99_ms=None if p99 is None else round(p99, 1),
        decode_tokens_per_second_per_stream=round(sum(speeds) / len(speeds), 2) if speeds else None,
        aggregate_decode_tokens_per_second=round(tokens / wall_s, 2) if wall_s > 0 and tokens else None,
        error_examples=tuple(sorted({r.error for r in results if r.error})[:3]),
    )


def run_one(client: ChatStreamer, prompt: str, max_tokens: int, model: str | None = None) -> RequestResult:
    """Send one streamed request and time it; a request error is recorded, not raised.

    Completion tokens come from the reply's usage when the server reports it, else one per content chunk.
    """
    request: dict[str, Any] = {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if model:
        request["model"] = model
    start = time.monotonic()
    first: float | None = None
    deltas = 0
    tokens: int | None = None
    try:
        for event in client.stream_chat(request):
            if isinstance(event, TextDelta):
                deltas += 1
                if first is None:
                    first = time.monotonic() - start
            elif isinstance(event, Done) and event.usage is not None:
                tokens = event.usage.completion_tokens
    except errors.RequestError as exc:
        return RequestResult(first, time.monotonic() - start, 0, f"{type(exc).__name__}: {exc.message}")
    return RequestResult(first, time.monotonic() - start, tokens if tokens is not None else deltas)


def run_level(
    make_client: Callable[[], ChatStreamer],
    concurrency: int,
    requests: int,
    max_tokens: int,
    on_result: Callable[[RequestResult], None] | None = None,
    model: str | None = None,
) -> LevelResult:
    """Run ``requests`` streamed requests, ``concurrency`` at a time, each thread with its own client."""
    local = threading.local()
    clients: list[ChatStreamer] = []
    lock = threading.Lock()

    def task(index: int) -> RequestResult:
        if not hasattr(local, "client"):
            local.client = make_client()
            with lock:
                clients.append(local.client)
        result = run_one(local.client, PROMPTS[index % len(PROMPTS)], max_tokens, model)
        if on_result is not None:
            on_result(result)
        return result

    start = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench") as pool:
            results = list(pool.map(task, range(requests)))
    finally:
        for client in clients:
            client.close()
    return summarise(concurrency, results, time.monotonic() - start)


def run_bench(
    make_client: Callable[[], ChatStreamer],
    levels: Sequence[int],
    requests_per_level: int,
    max_tokens: int,
    on_result: Callable[[int, RequestResult], None] | None = None,
    model: str | None = None,
) -> list[LevelResult]:
    """Every level in turn. ``on_result(level, result)`` reports progress."""
    out = []
    for level in levels:
        callback = None if on_result is None else (lambda r, level=level: on_result(level, r))
        out.append(run_level(make_client, level, requests_per_level, max_tokens, callback, model))
    return out
