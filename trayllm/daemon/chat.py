"""POST /v1/chat/completions: validate, window the conversation, queue, and stream or collect the reply."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
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
from trayllm.config import Settings
from trayllm.daemon.edge import SSE_HEADERS, error_body, json_object
from trayllm.daemon.engines import EngineSet
from trayllm.daemon.records import RequestContext, RequestRecorder
from trayllm.engine.handle import RequestHandle
from trayllm.engine.types import Finished, SamplingParams, TokenText
from trayllm.errors import EngineFailure, InvalidRequest, RequestError

if TYPE_CHECKING:
    from trayllm.engine.conversation import Message


def parse_request(body: bytes, max_depth: int) -> ChatCompletionRequest:
    """The body as a ChatCompletionRequest, or InvalidRequest with a message that names the problem."""
    data = json_object(body, max_depth=max_depth)
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidRequest(f"{where}: {message}" if where else message, param=where or None) from None


def to_messages(request: ChatCompletionRequest) -> list[Message]:
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.text} for m in request.messages]


def sampling_params(request: ChatCompletionRequest, settings: Settings, max_tokens: int) -> SamplingParams:
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=settings.temperature if request.temperature is None else request.temperature,
        top_p=settings.top_p if request.top_p is None else request.top_p,
        repetition_penalty=settings.repetition_penalty
        if request.repetition_penalty is None
        else request.repetition_penalty,
        seed=request.seed,
        stop=tuple(request.stop_sequences),
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
    """Each request goes to the engine its ``model`` names (``EngineSet.route``); its reply names both."""

    def __init__(self, engines: EngineSet, recorder: RequestRecorder) -> None:
        self.engines = engines
        self.recorder = recorder

    async def handle(self, request: Request) -> Response:
        state = request.scope["state"]
        context = RequestContext.arriving(state["request_id"], state["user"], request.headers.get("traceparent"))
        try:
            parsed, handle = await self._admit(request, context)
        except RequestError as error:
            self.recorder.rejected(context, error)  # the engine never saw it: its one record is written here
            raise
        info = context.model
        assert info is not None
        if parsed.stream:
            include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
            return StreamingResponse(
                self._stream(handle, info.name, info.engine, include_usage),
                media_type="text/event-stream",
                headers=SSE_HEADERS,
            )
        return await self._collect(request, handle, info.name, info.engine)

    async def _admit(self, request: Request, context: RequestContext) -> tuple[ChatCompletionRequest, RequestHandle]:
        """Parse and check the request and queue it, filling in ``context`` as facts become known."""
        parsed = parse_request(await request.body(), self.engines.settings.max_json_depth)
        context.requested_model, context.stream = parsed.model, parsed.stream
        member = self.engines.route(parsed.model)  # ModelNotFound for a model no engine serves
        context.model = member.info  # set before the check: a refusal's record names the engine it was meant for
        member.require_ready()
        engine = member.engine
        messages = to_messages(parsed)
        log_content = engine.settings.log_content
        if log_content:
            context.messages = messages
        engine.admit(context.user)  # the rate limit and the queue, before seconds go into tokenizing
        # in a worker thread: a prompt of megabytes takes seconds to tokenize, and the event loop serves everyone
        prompt = await asyncio.to_thread(engine.build_prompt, messages, parsed.requested_max_tokens)
        context.params = sampling_params(parsed, engine.settings, prompt.max_tokens)
        handle = engine.submit(
            context.request_id,
            context.user,
            prompt,
            context.params,
            asyncio.get_running_loop(),
            on_finished=functools.partial(self.recorder.finished, context),
            keep_text=log_content,
            arrived=context.received,
            admitted=True,
        )
        return parsed, handle

    async def _collect(self, request: Request, handle: RequestHandle, model: str, engine: str) -> Response:
        """Gather the whole reply; if the client hangs up first, cancel the generation."""
        pieces: list[str] = []

        async def gather() -> Finished:
            async for event in handle.events():
                if isinstance(event, TokenText):
                    pieces.append(event.text)
                else:
                    return event
            raise EngineFailure("the engine ended the request without finishing it")

        work = asyncio.ensure_future(gather())
        gone = asyncio.ensure_future(_wait_disconnect(request))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not work.done():
                handle.cancel()
        finished = await work
        if finished.error is not None:
            raise finished.error
        body = ChatCompletion(
            id=f"chatcmpl-{handle.request_id}",
            model=model,
            choices=[Choice(message=AssistantMessage(content="".join(pieces)), finish_reason=finished.reason)],
            usage=usage_of(finished),
            timings=timings_of(handle, finished, engine),
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


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
