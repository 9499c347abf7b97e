"""What OpenAI's two generation routes share: the sampling fields, the whole-or-streamed answer, and the SSE
framing (pieces, a finish chunk with trayllm's timings, usage when asked, ``[DONE]``, an error as a data line).

Chat (daemon/chat.py) and legacy completions (daemon/completions.py) differ only in their bodies' content
(messages or a prompt) and their reply objects, which each subclass of ``OpenAIRoute`` supplies.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from trayllm.api import OpenAIGenerationRequest, Timings, Usage
from trayllm.daemon.edge import SSE_HEADERS, error_body
from trayllm.daemon.generation import Generation, Generator, Started
from trayllm.engine.conversation import Message
from trayllm.engine.handle import RequestHandle
from trayllm.engine.types import Finished, TokenText


def openai_generation(
    parsed: OpenAIGenerationRequest,
    max_tokens: int | None,
    *,
    messages: list[Message] | None = None,
    text: str | None = None,
) -> Generation:
    """An OpenAI body's sampling fields, with the route's content (``messages`` or a raw ``text``)."""
    return Generation(
        model=parsed.model,
        stream=parsed.stream,
        messages=messages,
        text=text,
        max_tokens=max_tokens,
        temperature=parsed.temperature,
        top_p=parsed.top_p,
        repetition_penalty=parsed.repetition_penalty,
        frequency_penalty=parsed.frequency_penalty,
        presence_penalty=parsed.presence_penalty,
        seed=parsed.seed,
        stop=tuple(parsed.stop_sequences),
        include_usage=parsed.include_usage,
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


class OpenAIRoute(ABC):
    """One OpenAI generation route: ``parse`` its body, then answer whole (``whole``) or as SSE, whose data lines
    the subclass shapes (``opening``, ``piece``, ``finish``, ``usage``)."""

    operation: str  # gen_ai.operation.name: "chat" or "text_completion"

    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    @staticmethod
    @abstractmethod
    def parse(data: dict[str, Any]) -> Generation: ...

    @abstractmethod
    def whole(self, started: Started, text: str, finished: Finished) -> Response: ...

    def opening(self, started: Started) -> list[str]:
        """Data lines sent before the first piece (chat's role chunk); none by default."""
        return []

    @abstractmethod
    def piece(self, started: Started, text: str) -> str: ...

    @abstractmethod
    def finish(self, started: Started, finished: Finished) -> str: ...

    @abstractmethod
    def usage(self, started: Started, finished: Finished) -> str: ...

    async def handle(self, request: Request) -> Response:
        started = await self.generator.start(request, api="openai", operation=self.operation, parse=self.parse)
        if started.generation.stream:
            return StreamingResponse(self._stream(started), media_type="text/event-stream", headers=SSE_HEADERS)
        text, finished = await self.generator.collect(request, started.handle)
        return self.whole(started, text, finished)

    async def _stream(self, started: Started) -> AsyncIterator[str]:
        """SSE: the opening, a line per piece of text, the finish (with timings), usage if asked, [DONE]; a
        failure midway is an error body as a data line."""
        handle = started.handle
        try:
            for line in self.opening(started):
                yield _data(line)
            async for event in handle.events():
                if isinstance(event, TokenText):
                    yield _data(self.piece(started, event.text))
                    continue
                if event.error is not None:
                    yield _data(json.dumps(error_body(event.error)))
                elif event.reason != "cancelled":
                    yield _data(self.finish(started, event))
                    if started.generation.include_usage:
                        yield _data(self.usage(started, event))
            yield _data("[DONE]")
        finally:
            handle.cancel()  # no-op when finished; stops generation when the client went away


def _data(payload: str) -> str:
    return f"data: {payload}\n\n"
