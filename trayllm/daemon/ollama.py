"""POST /api/chat and /api/generate in Ollama's shapes, and Ollama's error shape for every /api/ route.

The generation itself is the Generator's (daemon/generation.py): the same routing, rate limit, queue, records and
cancellation as the OpenAI routes; a record says ``llm.api`` "ollama". What trayllm does with each of Ollama's
fields is trayllm.ollama_api's table. Ollama answers a body with no prompt (or no messages) by loading the model
and generating nothing; here the model is always loaded, so that request is answered at once, and as nothing is
generated it leaves no record.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from trayllm.daemon.edge import error_response
from trayllm.daemon.generation import Generation, Generator, validated
from trayllm.engine.handle import RequestHandle
from trayllm.engine.types import Finished, TokenText
from trayllm.errors import ModelNotFound, RequestError
from trayllm.ollama_api import (
    IGNORED_HEADER,
    AssistantMessage,
    ChatReply,
    ChatRequest,
    GenerateReply,
    GenerateRequest,
    untagged,
)

log = logging.getLogger(__name__)

OLLAMA_PREFIX = "/api/"
NDJSON = "application/x-ndjson"
MAX_LISTED = 20  # ignored fields named in the header and the log; past that, a count
_USE_HINT = (
    "to serve a model GET /api/tags lists, run `trayllm use NAME`; another one is downloaded first, with "
    "`trayllm pull HUB_ID` or POST /api/pull"
)

Reply = ChatReply | GenerateReply
Shape = Callable[..., Reply]  # (model, text, done, **final) -> one object of the reply


def speaks_ollama(path: str) -> bool:
    return path.startswith(OLLAMA_PREFIX) or path == OLLAMA_PREFIX.rstrip("/")


def ollama_error_response(error: RequestError) -> JSONResponse:
    """``{"error": "..."}`` with the error's own status (and Retry-After), as Ollama answers; a request's model
    that is not served (``param`` "model") gets a message that says how to serve it, where Ollama's says to pull
    it: the daemon never switches models for a request, as Ollama would load one."""
    not_served = isinstance(error, ModelNotFound) and error.param == "model"
    message = f"{error.message}; {_USE_HINT}" if not_served else error.message
    headers = {} if error.retry_after is None else {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
    return JSONResponse({"error": message}, status_code=error.status_code, headers=headers)


def error_response_for(path: str, error: RequestError) -> Response:
    """The error in the shape of the API ``path`` belongs to: Ollama's under /api/, else OpenAI's."""
    return ollama_error_response(error) if speaks_ollama(path) else error_response(error)


def ollama_metrics(finished: Finished) -> dict[str, int]:
    """What the last object of a reply says the request took, in nanoseconds, from the engine's timestamps.

    ``load_duration`` is Ollama's wait until a runner could take the request (loading the model when it had to);
    trayllm's model is always loaded, so it is the queue wait. ``prompt_eval_duration`` runs from the engine
    taking the request to the first token (the prompt's pass, which also yields that token), ``eval_duration``
    from there to the end; with no token at all, the prompt's pass is the whole and ``eval_duration`` is 0.
    """
    t = finished.timings
    end = t.finished if t.finished is not None else t.arrived
    started = t.started if t.started is not None else end  # never started: all of it was the wait
    first = t.first_token if t.first_token is not None else end

    def ns(start: float, stop: float) -> int:
        return max(0, round((stop - start) * 1e9))

    return {
        "total_duration": ns(t.arrived, end),
        "load_duration": ns(t.arrived, started),
        "prompt_eval_count": finished.prompt_tokens,
        "prompt_eval_duration": ns(started, first),
        "eval_count": finished.completion_tokens,
        "eval_duration": ns(first, end),
    }


def chat_reply(model: str, text: str, done: bool, **final: Any) -> ChatReply:
    return ChatReply(model=model, message=AssistantMessage(content=text), done=done, **final)


def generate_reply(model: str, text: str, done: bool, **final: Any) -> GenerateReply:
    return GenerateReply(model=model, response=text, done=done, **final)


def ignored_headers(ignored: list[str]) -> dict[str, str]:
    """The ignored fields as a header: each name as JSON writes it without quotes (printable ASCII whatever the
    client sent), at most MAX_LISTED of them."""
    if not ignored:
        return {}
    names = [json.dumps(name)[1:-1] for name in ignored[:MAX_LISTED]]
    if len(ignored) > MAX_LISTED:
        names.append(f"and {len(ignored) - MAX_LISTED} more")
    return {IGNORED_HEADER: ", ".join(names)}


class _LoadOnly(Exception):
    """Ollama's load request: a body without a prompt or messages. Raised out of ``parse`` so that the
    Generator, which records generations, neither queues nor records it."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.model = model


class OllamaGeneration:
    """POST /api/chat and /api/generate: NDJSON while streaming (the default), else one JSON object."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    def routes(self) -> list[Route]:
        return [
            Route("/api/chat", self.chat, methods=["POST"]),
            Route("/api/generate", self.generate, methods=["POST"]),
        ]

    async def chat(self, request: Request) -> Response:
        def parse(data: dict[str, Any]) -> tuple[ChatRequest, Generation]:
            body = validated(ChatRequest, data)
            if not body.messages:
                raise _LoadOnly(body.model)
            messages = [{"role": m.role, "content": m.text} for m in body.messages]
            return body, self._generation(body, body.sampling(), messages=messages)

        return await self._serve(request, parse, chat_reply)

    async def generate(self, request: Request) -> Response:
        def parse(data: dict[str, Any]) -> tuple[GenerateRequest, Generation]:
            body = validated(GenerateRequest, data)
            if not body.prompt:
                raise _LoadOnly(body.model)
            sampling = body.sampling()
            if body.raw:
                return body, self._generation(body, sampling, text=body.prompt)
            system = [{"role": "system", "content": body.system}] if body.system else []
            messages = [*system, {"role": "user", "content": body.prompt}]
            return body, self._generation(body, sampling, messages=messages)

        return await self._serve(request, parse, generate_reply)

    def _generation(self, body: ChatRequest | GenerateRequest, sampling: dict[str, Any], **prompt: Any) -> Generation:
        served = [info.name for info in self.generator.engines.served()]
        model, ignored = untagged(body.model, served), tuple(body.ignored)
        return Generation(model=model, stream=body.streams, ignored=ignored, **prompt, **sampling)

    async def _serve(
        self,
        request: Request,
        parse: Callable[[dict[str, Any]], tuple[ChatRequest | GenerateRequest, Generation]],
        shape: Shape,
    ) -> Response:
        parsed: list[ChatRequest | GenerateRequest] = []

        def to_generation(data: dict[str, Any]) -> Generation:
            body, generation = parse(data)
            parsed.append(body)
            return generation

        try:
            started = await self.generator.start(request, api="ollama", operation="chat", parse=to_generation)
        except _LoadOnly as load:
            return self._loaded(load.model, shape)
        body = parsed[0]
        headers = ignored_headers(body.ignored)
        if body.ignored:
            log.info("%s ignored %s", request.url.path, headers[IGNORED_HEADER])
        handle = started.handle
        if started.generation.stream:
            return StreamingResponse(self._stream(handle, body.model, shape), media_type=NDJSON, headers=headers)
        text, finished = await self.generator.collect(request, handle)
        reply = shape(body.model, text, True, done_reason=finished.reason, **ollama_metrics(finished))
        return JSONResponse(reply.model_dump(exclude_none=True), headers=headers)

    def _loaded(self, asked: str, shape: Shape) -> Response:
        """Ollama's answer to its load request, once the model asked for is known to be loaded."""
        engines = self.generator.engines
        member = engines.route(untagged(asked, [info.name for info in engines.served()]))
        member.engine.require_loaded()
        return JSONResponse(shape(asked, "", True, done_reason="load").model_dump(exclude_none=True))

    @staticmethod
    async def _stream(handle: RequestHandle, model: str, shape: Shape) -> AsyncIterator[str]:
        """One object per piece of text, then the last with ``done``; a failure ends the stream with an
        ``{"error": ...}`` line instead, as Ollama's does once its reply has begun."""
        try:
            async for event in handle.events():
                if isinstance(event, TokenText):
                    if event.text:  # empty while a stop string might be forming
                        yield shape(model, event.text, False).model_dump_json(exclude_none=True) + "\n"
                    continue
                if event.error is not None:
                    yield json.dumps({"error": event.error.message}) + "\n"
                elif event.reason != "cancelled":
                    last = shape(model, "", True, done_reason=event.reason, **ollama_metrics(event))
                    yield last.model_dump_json(exclude_none=True) + "\n"
        finally:
            handle.cancel()  # no-op when finished; stops generation when the client went away
