"""Wire types shared by the daemon and its clients: OpenAI's chat schema plus trayllm's extensions.

Requests refuse fields they do not know (``extra="forbid"``) and name the OpenAI fields
trayllm does not support yet, so a client learns at once that an option had no effect.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_STOP_SEQUENCES = 4

# OpenAI request fields that trayllm does not implement; setting one is a 400 that names it.
UNSUPPORTED_FIELDS = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "audio",
    "modalities",
    "prediction",
    "parallel_tool_calls",
    "reasoning_effort",
    "web_search_options",
)


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
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """POST /v1/chat/completions body. Unknown fields are refused; see UNSUPPORTED_FIELDS."""

    model_config = ConfigDict(extra="allow")  # extras are checked by hand for a precise message

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)  # under 1e-5: greedy (engine.sampling)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)  # however small, the top token is kept
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)  # int64, as OpenAI's; torch takes them all
    n: int | None = Field(default=None, ge=1, le=1)
    user: str | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(default=None, ge=1.0, le=2.0)

    @model_validator(mode="after")
    def _refuse_extras(self) -> ChatCompletionRequest:
        for name in self.model_extra or {}:
            if name in UNSUPPORTED_FIELDS:
                raise ValueError(f"'{name}' is not supported by trayllm")
            raise ValueError(f"unknown field '{name}'")
        return self

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
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


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
