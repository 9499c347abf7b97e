"""POST /v1/completions, OpenAI's legacy completions: one raw prompt, no chat template, in ``text_completion``
objects. The generation itself is the Generator's (daemon/generation.py); usage and timings are the chat route's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from trayllm.api import Completion, CompletionChoice, CompletionRequest
from trayllm.daemon.chat import timings_of, usage_of
from trayllm.daemon.edge import SSE_HEADERS, error_body
from trayllm.daemon.generation import Generation, Generator, validated
from trayllm.engine.handle import RequestHandle
from trayllm.engine.types import TokenText


def parse_completion(data: dict[str, Any]) -> Generation:
    """A legacy completion body as a Generation, or InvalidRequest naming the field at fault."""
    parsed = validated(CompletionRequest, data)
    return Generation(
        model=parsed.model,
        stream=parsed.stream,
        text=parsed.prompt,
        max_tokens=parsed.max_tokens,
        temperature=parsed.temperature,
        top_p=parsed.top_p,
        repetition_penalty=parsed.repetition_penalty,
        frequency_penalty=parsed.frequency_penalty,
        presence_penalty=parsed.presence_penalty,
        seed=parsed.seed,
        stop=tuple(parsed.stop_sequences),
        include_usage=parsed.include_usage,
    )


def _json(body: Completion) -> str:
    """``body`` as JSON with its choices whole (OpenAI sends their ``logprobs`` and an unfinished ``finish_reason``
    as null, and clients read them), but without the top-level fields that are unset (``usage``, ``timings``)."""
    return body.model_dump_json(exclude={name for name, value in body if value is None})


class CompletionHandler:
    """POST /v1/completions in OpenAI's shapes, streamed (SSE) or whole."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    async def handle(self, request: Request) -> Response:
        started = await self.generator.start(request, api="openai", operation="text_completion", parse=parse_completion)
        handle, info = started.handle, started.model
        if started.generation.stream:
            return StreamingResponse(
                self._stream(handle, info.name, info.engine, started.generation.include_usage),
                media_type="text/event-stream",
                headers=SSE_HEADERS,
            )
        text, finished = await self.generator.collect(request, handle)
        body = Completion(
            id=f"cmpl-{handle.request_id}",
            model=info.name,
            choices=[CompletionChoice(text=text, finish_reason=finished.reason)],
            usage=usage_of(finished),
            timings=timings_of(handle, finished, info.engine),
        )
        return Response(_json(body), media_type=JSONResponse.media_type)

    async def _stream(self, handle: RequestHandle, model: str, engine: str, include_usage: bool) -> AsyncIterator[str]:
        """SSE: a chunk per piece of text, a finish chunk (with timings), usage if asked, [DONE]."""
        chunk_id = f"cmpl-{handle.request_id}"

        def chunk(choices: list[CompletionChoice], **extra: Any) -> str:
            return f"data: {_json(Completion(id=chunk_id, model=model, choices=choices, **extra))}\n\n"

        try:
            async for event in handle.events():
                if isinstance(event, TokenText):
                    yield chunk([CompletionChoice(text=event.text)])
                    continue
                if event.error is not None:
                    yield f"data: {json.dumps(error_body(event.error))}\n\n"
                elif event.reason != "cancelled":
                    yield chunk(
                        [CompletionChoice(text="", finish_reason=event.reason)],
                        timings=timings_of(handle, event, engine),
                    )
                    if include_usage:
                        yield chunk([], usage=usage_of(event))
            yield "data: [DONE]\n\n"
        finally:
            handle.cancel()  # no-op when finished; stops generation when the client went away
