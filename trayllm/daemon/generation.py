"""What every generation route shares, whichever API it speaks: admit, record, queue, collect.

OpenAI's chat and legacy completions and Ollama's chat and generate differ only in the shape of their bodies and
replies. Each parses its body into a ``Generation`` (no API's shape) and formats the engine's events its own way;
routing to an engine, the rate limit and queue, tokenizing off the event loop, the one record per request
(refused ones included) and cancelling when the client leaves are done here, once, for all of them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from trayllm.config import Settings
from trayllm.daemon.edge import json_object
from trayllm.daemon.engines import EngineSet
from trayllm.daemon.records import RequestContext, RequestRecorder
from trayllm.engine.conversation import Message
from trayllm.engine.handle import RequestHandle
from trayllm.engine.types import Finished, ModelInfo, SamplingParams, TokenText
from trayllm.errors import EngineFailure, InvalidRequest, RequestError

Body = TypeVar("Body", bound=BaseModel)


@dataclass(frozen=True)
class Generation:
    """A request to generate, in no API's shape: a conversation (``messages``, through the model's chat
    template) or a raw prompt (``text``), and the sampling the client asked for (None: the daemon's default)."""

    model: str | None
    stream: bool
    messages: list[Message] | None = None
    text: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    include_usage: bool = False  # OpenAI's stream_options.include_usage: a streamed reply ends with its usage
    ignored: tuple[str, ...] = ()  # fields the body sent that change nothing (Ollama's ignored options): recorded


@dataclass(frozen=True)
class Started:
    """A request the engine took: its handle, and the model of the engine that serves it."""

    handle: RequestHandle
    model: ModelInfo
    generation: Generation


def validated(schema: type[Body], data: dict[str, Any]) -> Body:
    """``data`` as ``schema``, or InvalidRequest naming the first field at fault (its path, as ``param``)."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidRequest(f"{where}: {message}" if where else message, param=where or None) from None


def sampling_params(generation: Generation, settings: Settings, max_tokens: int) -> SamplingParams:
    """What the client asked for, each unset value from the daemon's defaults."""

    def either(asked: float | None, default: float) -> float:
        return default if asked is None else asked

    return SamplingParams(
        max_tokens=max_tokens,
        temperature=either(generation.temperature, settings.temperature),
        top_p=either(generation.top_p, settings.top_p),
        repetition_penalty=either(generation.repetition_penalty, settings.repetition_penalty),
        frequency_penalty=either(generation.frequency_penalty, 0.0),
        presence_penalty=either(generation.presence_penalty, 0.0),
        seed=generation.seed,
        stop=generation.stop,
    )


class Generator:
    """Starts and collects generations for every route; each request goes to the engine its ``model`` names
    (``EngineSet.route``)."""

    def __init__(self, engines: EngineSet, recorder: RequestRecorder) -> None:
        self.engines = engines
        self.recorder = recorder

    async def start(
        self, request: Request, *, api: str, operation: str, parse: Callable[[dict[str, Any]], Generation]
    ) -> Started:
        """Parse, check and queue the request. A refusal is recorded here (the engine never saw it) and raised;
        its record names the model the body asked for whenever the body named one, valid or not."""
        state = request.scope["state"]
        context = RequestContext.arriving(
            state["request_id"], state["user"], request.headers.get("traceparent"), api, operation
        )
        try:
            data = json_object(await request.body(), max_depth=self.engines.settings.max_json_depth)
            asked = data.get("model")
            context.requested_model = asked if isinstance(asked, str) else None
            generation = parse(data)
            return await self._queue(generation, context)
        except RequestError as error:
            self.recorder.rejected(context, error)
            raise

    async def _queue(self, generation: Generation, context: RequestContext) -> Started:
        context.requested_model, context.stream = generation.model, generation.stream
        context.ignored = generation.ignored
        # what the body asked for, not the route: Ollama's /api/generate is a chat, or with raw a text completion
        context.operation = "chat" if generation.messages is not None else "text_completion"
        member = self.engines.route(generation.model)  # ModelNotFound for a model no engine serves
        context.model = member.info  # set before the check: a refusal's record names the engine it was meant for
        member.require_ready()
        engine = member.engine
        if generation.messages is None:
            assert generation.text is not None, "a generation has messages or a text"
            logged: list[Message] = [{"role": "user", "content": generation.text}]
            build = functools.partial(engine.build_text_prompt, generation.text, generation.max_tokens)
        else:
            logged = generation.messages
            build = functools.partial(engine.build_prompt, generation.messages, generation.max_tokens)
        log_content = engine.settings.log_content
        if log_content:
            context.messages = logged
        engine.admit(context.user)  # the rate limit and the queue, before seconds go into tokenizing
        # in a worker thread: a prompt of megabytes takes seconds to tokenize, and the event loop serves everyone
        prompt = await asyncio.to_thread(build)
        context.params = sampling_params(generation, engine.settings, prompt.max_tokens)
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
        assert context.model is not None
        return Started(handle, context.model, generation)

    @staticmethod
    async def collect(request: Request, handle: RequestHandle) -> tuple[str, Finished]:
        """The whole reply and how it ended; if the client hangs up first, the generation is cancelled. A failed
        generation raises its error."""
        pieces: list[str] = []

        async def gather() -> Finished:
            async for event in handle.events():
                if isinstance(event, TokenText):
                    pieces.append(event.text)
                else:
                    return event
            raise EngineFailure("the engine ended the request without finishing it")

        work = asyncio.ensure_future(gather())
        gone = asyncio.ensure_future(wait_disconnect(request))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not work.done():
                handle.cancel()
        finished = await work
        if finished.error is not None:
            raise finished.error
        return "".join(pieces), finished


async def wait_disconnect(request: Request) -> None:
    """Returns once the client has hung up (its request body already read, as every route reads it first)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
