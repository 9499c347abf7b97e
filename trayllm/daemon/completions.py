"""POST /v1/completions, OpenAI's legacy completions: one raw prompt, no chat template, in ``text_completion``
objects. The generation is the Generator's (daemon/generation.py), the answer's framing OpenAIRoute's."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from trayllm.api import Completion, CompletionChoice, CompletionRequest
from trayllm.daemon.generation import Generation, Started, validated
from trayllm.daemon.openai_route import OpenAIRoute, openai_generation, timings_of, usage_of
from trayllm.engine.types import Finished


def parse_completion(data: dict[str, Any]) -> Generation:
    """A legacy completion body as a Generation, or InvalidRequest naming the field at fault."""
    parsed = validated(CompletionRequest, data)
    return openai_generation(parsed, parsed.max_tokens, text=parsed.prompt)


def _json(body: Completion) -> str:
    """``body`` as JSON with its choices whole (OpenAI sends their ``logprobs`` and an unfinished ``finish_reason``
    as null, and clients read them), but without the top-level fields that are unset (``usage``, ``timings``)."""
    return body.model_dump_json(exclude={name for name, value in body if value is None})


class CompletionHandler(OpenAIRoute):
    """Legacy completions: a ``text_completion`` whole, or ``text_completion`` chunks."""

    operation = "text_completion"
    parse = staticmethod(parse_completion)

    def whole(self, started: Started, text: str, finished: Finished) -> Response:
        handle, info = started.handle, started.model
        body = Completion(
            id=f"cmpl-{handle.request_id}",
            model=info.name,
            choices=[CompletionChoice(text=text, finish_reason=finished.reason)],
            usage=usage_of(finished),
            timings=timings_of(handle, finished, info.engine),
        )
        return Response(_json(body), media_type=JSONResponse.media_type)

    def piece(self, started: Started, text: str) -> str:
        return self._chunk(started, [CompletionChoice(text=text)])

    def finish(self, started: Started, finished: Finished) -> str:
        timings = timings_of(started.handle, finished, started.model.engine)
        return self._chunk(started, [CompletionChoice(text="", finish_reason=finished.reason)], timings=timings)

    def usage(self, started: Started, finished: Finished) -> str:
        return self._chunk(started, [], usage=usage_of(finished))

    @staticmethod
    def _chunk(started: Started, choices: list[CompletionChoice], **extra: Any) -> str:
        return _json(
            Completion(id=f"cmpl-{started.handle.request_id}", model=started.model.name, choices=choices, **extra)
        )
