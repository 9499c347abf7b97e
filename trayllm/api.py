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
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Strict):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None  # OpenAI pads chunks against length side channels; nothing to pad here


class OpenAIGenerationRequest(BaseModel):
    """What OpenAI's chat and legacy completion bodies share: the sampling trayllm acts on, and the check of every
    other field against ``field_rules`` (trayllm/api_fields.py). Null is taken for every optional field."""

    model_config = ConfigDict(extra="forbid")
    field_rules: ClassVar[tuple[FieldRule, ...]] = ()

    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)  # under 1e-5: greedy (engine.sampling)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)  # however small, the top token is kept
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)  # int64, as OpenAI's; torch takes them all
    user: str | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(default=None, ge=1.0, le=2.0)  # trayllm's (and vLLM's) extension

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

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(OpenAIGenerationRequest):
    """POST /v1/completions body (OpenAI's legacy completions): one raw prompt, no chat template."""

    field_rules = COMPLETION_FIELD_RULES

    prompt: str
    max_tokens: int | None = Field(default=COMPLETION_DEFAULT_MAX_TOKENS, ge=1)

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

    request_id: str
    queue_ms: float
    first_token_ms: float | None
    total_ms: float
    tokens_per_second: float | None
    max_tokens_capped: bool = False
    vram_peak_bytes: int | None = None  # CUDA only: the allocator's peak while this request ran
    engine: str | None = None  # the engine that served it (its [[engines]] name, "local" or "remote")


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
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "trayllm"
    version: str
    context_length: int
    engine: str = "local"  # ours: the engine that serves it (its [[engines]] name, "local" or "remote")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


MAX_MODEL_SETTING = 4096  # a path or hub id in POST /v1/reload's body (PATH_MAX)


class ReloadRequest(_Strict):
    """POST /v1/reload's optional body: ``model`` switches to another model (a value of the ``model`` setting: a
    path, a hub id, "" for the embedded model); without it the same model is loaded again."""

    model: str | None = Field(default=None, max_length=MAX_MODEL_SETTING)

    @field_validator("model")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and any(ord(c) < 32 for c in value):
            raise ValueError("must not hold control characters")
        return value


class ModelStatus(BaseModel):
    """The loaded model in /v1/status: validated from the engine's ``ModelInfo`` (trayllm.engine.types), field
    for field (tests/daemon/test_status.py keeps the two in step)."""

    name: str
    version: str
    source: str
    device: str
    dtype: str
    quantization: str
    context_length: int
    device_index: int | None = None
    memory_total_bytes: int | None = None
    device_uuid: str | None = None  # NVML's name for that device; its NVML index may differ from device_index
    engine: str = "local"  # the engine that serves it ("local", "remote", or its [[engines]] name)
    engine_url: str | None = None  # a remote engine's upstream base URL


class QueueStatus(BaseModel):
    depth: int
    capacity: int
    in_flight: int
    max_batch: int
    backlog_cap_active: bool
    backlog_max_tokens: int
    vram_blocked: bool = False  # the next request waits until running ones free VRAM


class SloRow(BaseModel):
    """One objective judged now (``trayllm slo``; also inside /v1/status)."""

    objective: str
    window_s: float
    value: float | None
    threshold: float
    state: str  # ok | breach | insufficient
    budget_left: float | None
    samples: int
    unit: str = ""


class SloReport(BaseModel):
    """GET /v1/slo: the objectives at one moment, and every alert's state."""

    at: float  # Unix seconds the report was taken at (``trayllm slo --from FILE --at`` reproduces it)
    objectives: list[SloRow]
    alerts: dict[str, Literal["ok", "firing", "resolved"]]


class Alert(BaseModel):
    """An alert transition, as /v1/events data and in /v1/status's list of firing alerts."""

    key: str
    state: Literal["firing", "resolved"]
    severity: Literal["critical", "warning"]
    message: str
    value: float | None = None
    threshold: float | None = None
    at: float
    id: str | None = None  # the event id (also the alert record's event.id)
    details: dict[str, Any] | None = None


class RequestCounters(BaseModel):
    """The engine's ``Counters`` (trayllm.engine.handle), field for field."""

    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    rejected: int = 0
    tokens_in: int = 0
    tokens_out: int = 0


class Memory(BaseModel):
    used_bytes: int
    total_bytes: int


class ShippingStatus(BaseModel):
    """Shipping to Elasticsearch, when ``es_url`` is set: ``elastic.shipper.ShipperStats``, field for field."""

    state: str
    delivered: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    unreadable: int = 0  # of those dead-lettered: lines torn by a crash, or damaged
    retries: int = 0
    backlog_bytes: int = 0
    last_error: str | None = None
    last_delivery: float | None = None


EngineState = Literal["loading", "warming", "ready", "failed", "reloading", "draining"]
"""Where the engine is in its life (``Engine.state``), as /v1/status and /v1/events report it. Defined here, with
the wire types, so that clients read it without importing the engine package."""


class EngineStatus(BaseModel):
    """One engine the daemon serves from (``[[engines]]``, or the one of the ``engine_*`` settings)."""

    name: str
    default: bool = False  # the engine a request without a ``model`` goes to
    state: EngineState
    paused: str | None = None
    model: str | None = None  # the name clients send as ``model``; None until it is known
    version: str | None = None
    url: str | None = None  # a remote engine's upstream base URL
    reachable: bool | None = None  # a remote engine's upstream answered its last probe or request
    queue_depth: int = 0
    in_flight: int = 0

    def line(self) -> str:
        """One line naming it and how it is, for `trayllm status` and the tray's tooltip."""
        words = [f"{self.name}{' (default)' if self.default else ''}: {self.model or 'no model yet'}", self.state]
        if self.url:
            words.append(f"at {self.url}" + (" (unreachable)" if self.reachable is False else ""))
        if self.paused:
            words.append("paused")
        return " · ".join(words)


class DaemonStatus(BaseModel):
    """GET /v1/status: everything a tray tooltip or `trayllm status` shows (built by daemon.app.daemon_status)."""

    state: EngineState
    paused: str | None = None  # the reason, while new requests are refused
    model: ModelStatus | None
    load_progress: str | None = None
    error: str | None = None
    vram: Memory | None = None
    queue: QueueStatus
    requests: RequestCounters
    uptime_s: float
    pid: int
    version: str
    boot_id: str | None = None  # changes when the daemon restarts (the /v1/events id prefix)
    slo: list[SloRow] = []
    alerts: list[Alert] = []  # firing now
    shipping: ShippingStatus | None = None
    engines: list[EngineStatus] = []  # every engine; the fields above are the default one's
