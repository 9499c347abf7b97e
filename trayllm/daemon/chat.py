"""POST /v1/chat/completions in OpenAI's shapes; the generation is the Generator's (daemon/generation.py), the
answer's framing OpenAIRoute's (daemon/openai_route.py)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from trayllm.api import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
)
from trayllm.daemon.generation import Generation, Started, validated
from trayllm.daemon.openai_route import OpenAIRoute, openai_generation, timings_of, usage_of
from trayllm.engine.types import Finished


def parse_chat(data: dict[str, Any]) -> Generation:
    """A chat completion body as a Generation, or InvalidRequest naming the field at fault."""
    parsed = validated(ChatCompletionRequest, data)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text} for m in parsed.messages]
    return openai_generation(parsed, parsed.requested_max_tokens, messages=messages)


class ChatCompletionHandler(OpenAIRoute):
    """Chat completions: a ``chat.completion`` whole, or ``chat.completion.chunk`` lines opening with the role."""

    operation = "chat"
    parse = staticmethod(parse_chat)

    def whole(self, started: Started, text: str, finished: Finished) -> Response:
        handle, info = started.handle, started.model
        body = ChatCompletion(
            id=f"chatcmpl-{handle.request_id}",
            model=info.name,
            choices=[Choice(message=AssistantMessage(content=text), finish_reason=finished.reason)],
            usage=usage_of(finished),
            timings=timings_of(handle, finished, info.engine),
        )
        return JSONResponse(body.model_dump(exclude_none=True))

    def opening(self, started: Started) -> list[str]:
        return [self._chunk(started, [ChunkChoice(delta=Delta(role="assistant", content=""))])]

    def piece(self, started: Started, text: str) -> str:
        return self._chunk(started, [ChunkChoice(delta=Delta(content=text))])

    def finish(self, started: Started, finished: Finished) -> str:
        timings = timings_of(started.handle, finished, started.model.engine)
        return self._chunk(started, [ChunkChoice(delta=Delta(), finish_reason=finished.reason)], timings=timings)

    def usage(self, started: Started, finished: Finished) -> str:
        return self._chunk(started, [], usage=usage_of(finished))

    @staticmethod
    def _chunk(started: Started, choices: list[ChunkChoice], **extra: Any) -> str:
        body = ChatCompletionChunk(
            id=f"chatcmpl-{started.handle.request_id}", model=started.model.name, choices=choices, **extra
        )
        return body.model_dump_json(exclude_none=True)
