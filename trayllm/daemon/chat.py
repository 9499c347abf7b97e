"""POST /v1/chat/completions in OpenAI's shapes; the generation itself is the Generator's (daemon/generation.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from trayllm.api import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    Timings,
    Usage,
)
from trayllm.daemon.edge import SSE_HEADERS, error_body
from trayllm.daemon.generation import Generation, Generator, validated
from trayllm.engine.handle import RequestHandle
from trayllm.engine.types import Finished, TokenText


def parse_chat(data: dict[str, Any]) -> Generation:
    """A chat completion body as a Generation, or InvalidRequest naming the field at fault."""
    parsed = validated(ChatCompletionRequest, data)
    return Generation(
        model=parsed.model,
        stream=parsed.stream,
        messages=[{"role": "system" if m.role == "developer" else m.role, "content": m.text} for m in parsed.messages],
        max_tokens=parsed.requested_max_tokens,
        temperature=parsed.temperature,
        top_p=parsed.top_p,
        repetition_penalty=parsed.repetition_penalty,
        frequency_penalty=parsed.frequency_penalty,
        presence_penalty=parsed.presence_penalty,
        seed=parsed.seed,
        stop=tuple(parsed.stop_sequences),
        include_usage=bool(parsed.stream_options and parsed.stream_options.include_usage),
    )


def timings_of(handle: RequestHandle, finished: Finished, engine: str) -> Timings:
    t = finished.timings
    return Timings(
        request_id=handle.request_id,
        queue_ms=round(t.queue_ms, 2),
        first_token_ms=None if t.first_token_ms is None else round(t.first_token_ms, 2),
        total_ms=round(t.total_ms, 2),
        tokens_per_second=None
        if finished.decode_tokens_per_second is None
        else round(finished.decode_tokens_per_second, 2),
        max_tokens_capped=handle.max_tokens_capped,
        vram_peak_bytes=finished.vram_peak_bytes,
        engine=engine,
    )


def usage_of(finished: Finished) -> Usage:
    return Usage(
        prompt_tokens=finished.prompt_tokens,
        completion_tokens=finished.completion_tokens,
        total_tokens=finished.prompt_tokens + finished.completion_tokens,
    )


class ChatCompletionHandler:
    """POST /v1/chat/completions in OpenAI's shapes, streamed (SSE) or whole."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    async def handle(self, request: Request) -> Response:
        started = await self.generator.start(request, api="openai", operation="chat", parse=parse_chat)
        handle, info = started.handle, started.model
        if started.generation.stream:
            return StreamingResponse(
                self._stream(handle, info.name, info.engine, started.generation.include_usage),
                media_type="text/event-stream",
                headers=SSE_HEADERS,
            )
        text, finished = await self.generator.collect(request, handle)
        body = ChatCompletion(
            id=f"chatcmpl-{handle.request_id}",
            model=info.name,
            choices=[Choice(message=AssistantMessage(content=text), finish_reason=finished.reason)],
            usage=usage_of(finished),
            timings=timings_of(handle, finished, info.engine),
        )
        return JSONResponse(body.model_dump(exclude_none=True))

    async def _stream(self, handle: RequestHandle, model: str, engine: str, include_usage: bool) -> AsyncIterator[str]:
        """SSE: a role chunk, content chunks, a finish chunk (with timings), usage if asked, [DONE]."""
        chunk_id = f"chatcmpl-{handle.request_id}"

        def chunk(delta: Delta, finish_reason: str | None = None, **extra: Any) -> str:
            body = ChatCompletionChunk(
                id=chunk_id, model=model, choices=[ChunkChoice(delta=delta, finish_reason=finish_reason)], **extra
            )
            return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

        try:
            yield chunk(Delta(role="assistant", content=""))
            async for event in handle.events():
                if isinstance(event, TokenText):
                    yield chunk(Delta(content=event.text))
                    continue
                if event.error is not None:
                    yield f"data: {json.dumps(error_body(event.error))}\n\n"
                elif event.reason != "cancelled":
                    yield chunk(Delta(), event.reason, timings=timings_of(handle, event, engine))
                    if include_usage:
                        usage_chunk = ChatCompletionChunk(id=chunk_id, model=model, choices=[], usage=usage_of(event))
                        yield f"data: {usage_chunk.model_dump_json(exclude_none=True)}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            handle.cancel()  # no-op when finished; stops generation when the client went away
