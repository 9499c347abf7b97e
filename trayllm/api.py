"""Wire types shared by the daemon and its clients: OpenAI's chat and legacy completion schemas plus trayllm's
extensions.

A request refuses fields it does not know, and takes OpenAI's fields for things trayllm does not do only with the
values that ask for nothing (trayllm/api_fields.py has the rule and the table), so a client learns at once that an
option had no effect.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trayllm.api_fields import CHAT_FIELD_RULES, COMPLETION_FIELD_RULES, FieldRule, within_rules

MAX_STOP_SEQUENCES = 4

COMPLETION_DEFAULT_MAX_TOKENS = 16
"""A legacy completion's reply budget when ``max_tokens`` is not sent: OpenAI's API reference gives 16 as its default
(vLLM follows it); an explicit null leaves it to the daemon's ``default_max_tokens``, as for chat."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"] = Field(description="Text is the only kind of part: trayllm serves text-only models.")
    text: str = Field(description="The part's text; a message's parts are joined without separators.")


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="Who said it; developer is read as system. System messages come first, and are always kept "
        "when the oldest turns are dropped to fit the context."
    )
    content: str | list[TextPart] = Field(description="The text, or a list of text parts.")
    name: str | None = Field(default=None, description="Accepted and not sent to the model.")

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Strict):
    include_usage: bool | None = Field(
        default=None, description="true: the stream ends with one more chunk, no choices and the token counts."
    )
    include_obfuscation: bool | None = Field(
        default=None,
        description="Accepted and changes nothing: OpenAI pads its chunks against length side channels; a local "
        "daemon has none to pad against.",
    )


class OpenAIGenerationRequest(BaseModel):
    """What OpenAI's chat and legacy completion bodies share: the sampling trayllm acts on, and the check of every
    other field against ``field_rules`` (trayllm/api_fields.py). Null is taken for every optional field."""

    model_config = ConfigDict(extra="forbid")
    field_rules: ClassVar[tuple[FieldRule, ...]] = ()

    model: str | None = Field(
        default=None,
        description="The model (or engine) to ask, as /v1/models names it; omitted or null: the default engine's.",
    )
    stream: bool = Field(
        default=False, description="true: the reply comes as server-sent events ending in `data: [DONE]`."
    )
    stream_options: StreamOptions | None = Field(default=None, description="For a stream; see `stream_options`.")
    temperature: float | None = Field(
        default=None,
        ge=0.0,
        le=2.0,
        description="Sampling temperature; below 1e-5 it is greedy, the same as 0. Null: the `temperature` setting.",
    )
    top_p: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Sample from the most likely tokens that add up to this probability; however small, the most "
        "likely token is kept. Null: the `top_p` setting.",
    )
    stop: str | list[str] | None = Field(
        default=None,
        description=f"Up to {MAX_STOP_SEQUENCES} non-empty strings (or one string); the reply ends before the first "
        "one it would hold, with finish_reason stop.",
    )
    seed: int | None = Field(  # int64, as OpenAI's; torch takes them all
        default=None,
        ge=-(2**63),
        le=2**63 - 1,
        description="The same seed gives the same reply, whatever else is in the batch; null: random.",
    )
    user: str | None = Field(
        default=None,
        description="Accepted and not used: the record's user.name is the caller's own (the socket's peer, or the "
        "token's owner).",
    )
    frequency_penalty: float | None = Field(
        default=None,
        ge=-2.0,
        le=2.0,
        description="OpenAI's: a token's logit drops by this times its count in the reply so far; negative values "
        "favour repeats; 0 (null) is off.",
    )
    presence_penalty: float | None = Field(
        default=None,
        ge=-2.0,
        le=2.0,
        description="OpenAI's: a token's logit drops by this once it is in the reply; negative values favour "
        "repeats; 0 (null) is off.",
    )
    repetition_penalty: float | None = Field(
        default=None,
        ge=1.0,
        le=2.0,
        description="trayllm's extension (vLLM's too), CTRL's penalty on every token already in the prompt or the "
        "reply: a positive logit is divided by it, a negative one multiplied; 1 is off. Null: the "
        "`repetition_penalty` setting.",
    )

    @model_validator(mode="before")
    @classmethod
    def _check_fields(cls, data: Any) -> Any:
        """Unknown fields and refused values raise InvalidRequest naming the field (as ``param``); the fields the
        rules cover are dropped once checked, as they change nothing."""
        return within_rules(data, cls.field_rules, cls.model_fields)

    @field_validator("stream", mode="before")
    @classmethod
    def _null_is_false(cls, value: Any) -> Any:
        return False if value is None else value

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return value

    @property
    def stop_sequences(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        """Whether a streamed reply ends with a usage chunk (``stream_options.include_usage``)."""
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(OpenAIGenerationRequest):
    """POST /v1/chat/completions body."""

    field_rules = CHAT_FIELD_RULES

    messages: list[ChatMessage] = Field(
        min_length=1,
        description="The conversation, through the model's chat template; when it does not fit the context beside "
        "the reply, the oldest turns are dropped (system messages stay).",
    )
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="The most tokens the reply may have; the prompt must still fit in the context beside them. "
        "Null: the `default_max_tokens` setting.",
    )
    max_completion_tokens: int | None = Field(
        default=None, ge=1, description="OpenAI's newer name for max_tokens; taken over it when both are sent."
    )

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(OpenAIGenerationRequest):
    """POST /v1/completions body (OpenAI's legacy completions): one raw prompt, no chat template."""

    field_rules = COMPLETION_FIELD_RULES

    prompt: str = Field(
        description="The prompt, given to the model as it is (no chat template): a string, or a list of one string."
    )
    max_tokens: int | None = Field(
        default=COMPLETION_DEFAULT_MAX_TOKENS,
        ge=1,
        description="The most tokens the reply may have, OpenAI's 16 when not sent; null: the "
        "`default_max_tokens` setting. The prompt must still fit in the context beside them.",
    )

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_text(cls, value: Any) -> Any:
        """A string, or a list of one string (as langchain-openai sends it); several prompts, or token ids, are
        refused with what to send instead."""
        if not isinstance(value, list):
            return value
        if any(isinstance(item, (int, list)) for item in value):
            raise ValueError("token-id prompts are not supported; send the prompt as text")
        if len(value) != 1:
            raise ValueError(f"one prompt per request, not a list of {len(value)}; send one request for each")
        return value[0]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Timings(BaseModel):
    """What one request cost, returned with the reply (trayllm extension)."""

    request_id: str = Field(description="The request's id, as in its x-request-id header and its record.")
    queue_ms: float = Field(description="From arrival until the engine took it into a batch.")
    first_token_ms: float | None = Field(description="From arrival until the first token; null if none came.")
    total_ms: float = Field(description="From arrival until the reply ended.")
    tokens_per_second: float | None = Field(
        description="Decoding speed after the first token; null for replies under two tokens."
    )
    max_tokens_capped: bool = Field(
        default=False,
        description="true when the backlog cap (`backlog_max_tokens`) cut the reply budget while the queue was long.",
    )
    vram_peak_bytes: int | None = Field(
        default=None, description="CUDA only: the allocator's peak while this request ran."
    )
    engine: str | None = Field(
        default=None, description='The engine that served it: its [[engines]] name, "local" or "remote".'
    )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    timings: Timings | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    timings: Timings | None = None


class CompletionChoice(BaseModel):
    text: str
    index: int = 0
    logprobs: None = None  # OpenAI sends null (no log probabilities were asked for): kept in the JSON
    finish_reason: str | None = None  # null until the last chunk of a stream, as OpenAI sends it


class Completion(BaseModel):
    """A legacy completion, whole or (streamed) one chunk of it; both are ``text_completion`` objects."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    timings: Timings | None = None


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class ModelCard(BaseModel):
    id: str = Field(description="The name requests send as `model`.")
    object: Literal["model"] = Field(default="model", description="OpenAI's object type.")
    created: int = Field(description="When the daemon started serving, in Unix seconds.")
    owned_by: str = Field(default="trayllm", description="Always trayllm.")
    version: str = Field(description="trayllm's addition: the model's content hash or revision (`llm.model.version`).")
    context_length: int = Field(description="trayllm's addition: the most tokens a prompt and its reply may hold.")
    engine: str = Field(
        default="local",
        description='trayllm\'s addition: the engine that serves it, its [[engines]] name, "local" or "remote".',
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


MAX_MODEL_SETTING = 4096  # a path or hub id in POST /v1/reload's body (PATH_MAX)


class ReloadRequest(_Strict):
    """POST /v1/reload's optional body: ``model`` switches to another model (a value of the ``model`` setting: a
    path, a hub id, "" for the embedded model); without it the same model is loaded again."""

    model: str | None = Field(
        default=None,
        max_length=MAX_MODEL_SETTING,
        description='A value of the `model` setting to switch to (a path, a hub id, "" for the embedded model); '
        "omitted: load the same model again. A switch that cannot work is a 400 and the model serving now keeps "
        "serving.",
    )

    @field_validator("model")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and any(ord(c) < 32 for c in value):
            raise ValueError("must not hold control characters")
        return value
