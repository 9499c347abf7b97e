"""What the remote engine says to an OpenAI-compatible server and reads back, as pure functions.

Kept apart from the engine's threads and sockets so that each translation (our request into theirs, their
stream chunks into our events, their errors into our error types, their Prometheus text into a VRAM reading)
is tested on its own, with the exact bytes servers send.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from trayllm.engine.conversation import Prompt
from trayllm.engine.types import FinishReason, SamplingParams
from trayllm.errors import EngineFailure, EngineUnreachable, RequestError, UpstreamRejected

KV_CACHE_METRICS = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
"""vLLM's KV-cache usage gauge (0-1), by its current name and the one it had before v0.10."""

UPSTREAM_RETRY_AFTER_S = 5.0  # what a client is told to wait when the upstream is down


def request_path(prompt: Prompt) -> str:
    """Where ``prompt`` goes: a raw prompt to the legacy ``/completions``, which applies no chat template."""
    return "/completions" if prompt.text is not None else "/chat/completions"


def request_body(model: str, prompt: Prompt, params: SamplingParams) -> dict[str, Any]:
    """The streamed request (to ``request_path(prompt)``) for ``prompt``'s messages or raw text, with the
    sampling in effect here.

    ``repetition_penalty`` is not OpenAI's, so it is sent only when it does something (vLLM, TGI, SGLang
    and trayllm take it; a strict server that refuses it answers 400, which reaches the client as such).
    ``frequency_penalty`` and ``presence_penalty`` are OpenAI's, sent when not 0 (their default there too)."""
    body: dict[str, Any] = {
        "model": model,
        **({"messages": list(prompt.messages)} if prompt.text is None else {"prompt": prompt.text}),
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    if params.repetition_penalty != 1.0:
        body["repetition_penalty"] = params.repetition_penalty
    if params.frequency_penalty != 0.0:
        body["frequency_penalty"] = params.frequency_penalty
    if params.presence_penalty != 0.0:
        body["presence_penalty"] = params.presence_penalty
    if params.seed is not None:
        body["seed"] = params.seed
    if params.stop:
        body["stop"] = list(params.stop)
    return body


@dataclass
class StreamState:
    """What the stream has said so far: the finish reason and, from the usage chunk, the token counts."""

    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    chunks: int = 0  # content chunks: the token count when the server sends no usage
    done: bool = False


def read_stream_line(line: str, state: StreamState) -> str | None:
    """One SSE line of a streamed chat or legacy completion: the text it adds (a chat chunk's ``delta.content``, a
    legacy one's ``text``; None if none), updating ``state``.

    An error object in the stream (the server failed after its 200) raises EngineFailure with its message."""
    if not line.startswith("data:"):
        return None  # blank separators, comments, event names
    data = line[5:].strip()
    if data == "[DONE]":
        state.done = True
        return None
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        raise EngineFailure(f"the upstream sent a stream line that is not JSON: {data[:200]!r}") from None
    if not isinstance(chunk, dict):
        return None
    error = chunk.get("error")
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else error
        raise EngineFailure(f"the upstream failed mid-stream: {message}")
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        state.prompt_tokens = _int(usage.get("prompt_tokens"), state.prompt_tokens)
        state.completion_tokens = _int(usage.get("completion_tokens"), state.completion_tokens)
    content: str | None = None
    for choice in chunk.get("choices") or []:
        piece = (choice.get("delta") or {}).get("content") or choice.get("text")
        if piece:
            content = (content or "") + str(piece)
        reason = choice.get("finish_reason")
        if reason:
            state.finish_reason = "length" if reason == "length" else "stop"
    if content:
        state.chunks += 1
    return content


def _int(value: Any, fallback: int | None) -> int | None:
    return value if isinstance(value, int) else fallback


def upstream_error(status: int, body: bytes, retry_after: str | None = None) -> RequestError:
    """The RequestError for an upstream's error response: a 5xx means the engine is unavailable (503 with
    Retry-After here); a 4xx is passed on with the upstream's status, message, type and code."""
    detail: dict[str, Any] = {}
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            inner = parsed.get("error", parsed)
            detail = inner if isinstance(inner, dict) else {"message": str(inner)}
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    message = str(detail.get("message") or body[:300].decode("utf-8", "replace") or f"HTTP {status}")
    if status >= 500 or status < 400:
        return EngineUnreachable(
            f"the upstream engine answered HTTP {status}: {message}", retry_after=UPSTREAM_RETRY_AFTER_S
        )
    wait = _seconds(retry_after)
    code = detail.get("code")
    return UpstreamRejected(
        message,
        status_code=status,
        type=str(detail["type"]) if detail.get("type") else None,
        code=str(code) if code not in (None, "") else None,
        param=str(detail["param"]) if detail.get("param") else None,
        retry_after=wait,
    )


def _seconds(header: str | None) -> float | None:
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None


def metrics_url(base_url: str) -> str:
    """The server's Prometheus endpoint: ``/metrics`` at the root of ``base_url``'s host, not under ``/v1``."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/metrics"


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def kv_cache_usage(text: str) -> float | None:
    """The KV-cache usage (0-1) in a Prometheus text exposition, the highest over its series (one per model
    or engine), or None when the server exports no such gauge."""
    found: float | None = None
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match.group(1) not in KV_CACHE_METRICS:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if math.isfinite(value):
            found = value if found is None else max(found, value)
    return found
