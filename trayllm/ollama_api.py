"""Ollama's API as trayllm speaks it: the bodies and replies of /api/chat, /api/generate, /api/tags, /api/ps,
/api/show, /api/pull and /api/version under Ollama's own names (its api/types.go, release ``OLLAMA_VERSION``).

The request types declare the fields trayllm maps and take every other one, as Ollama does; what becomes of
those (ignored and listed, or refused by name) is trayllm.ollama_rules' table.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from trayllm.api import MAX_STOP_SEQUENCES
from trayllm.ollama_rules import RULES, Route, rules_for, sort_extras

OLLAMA_VERSION = "0.32.15"
"""What GET /api/version answers: the Ollama release whose API these shapes were checked against. Clients check
it against a minimum (VS Code's Copilot wants 0.6.4 or later), so trayllm's own version, far below, would be
refused; it is in ``trayllm_version`` beside it."""

LATEST = ":latest"  # Ollama's default tag: "name" and "name:latest" are one model
IGNORED_HEADER = "X-Trayllm-Ignored"


class _Lenient(BaseModel):
    """A body part that takes the fields it does not declare (as Ollama does) and sorts them by ``RULES``."""

    model_config = ConfigDict(extra="allow", strict=True)
    _ignored: list[str] = PrivateAttr(default_factory=list)

    @property
    def ignored(self) -> list[str]:
        """The fields sent here that had no effect (``options.top_k``), in the order sent."""
        return self._ignored


class Options(_Lenient):
    """``options``: the mapped ones declared, each as the daemon reads it (None: the daemon's default)."""

    num_predict: int | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    stop: list[str] | None = Field(default=None, max_length=MAX_STOP_SEQUENCES)
    repeat_penalty: float | None = Field(default=None, ge=1.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)

    @field_validator("num_predict")
    @classmethod
    def _no_limit_is_default(cls, value: int | None) -> int | None:
        """Ollama's "until a stop" (-1), "fill the context" (-2) and 0: the daemon's default_max_tokens."""
        return None if value is not None and value <= 0 else value

    @field_validator("seed")
    @classmethod
    def _random_is_default(cls, value: int | None) -> int | None:
        """Ollama's "random" (-1, any negative): no seed."""
        return None if value is not None and value < 0 else value

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not all(value):
            raise ValueError("stop sequences must not be empty")
        return value

    @model_validator(mode="after")
    def _sort(self) -> Options:
        self._ignored = sort_extras(self.model_extra or {}, rules_for("chat", "options."), "options.")
        return self

    def sampling(self) -> dict[str, Any]:
        """The options set, under the daemon's names (``Rule.maps_to``)."""
        values = {
            rule.maps_to: getattr(self, rule.name.removeprefix("options."))
            for rule in RULES
            if rule.maps_to is not None
        }
        if values["stop"] is not None:
            values["stop"] = tuple(values["stop"])
        return {name: value for name, value in values.items() if value is not None}


class Message(_Lenient):
    role: str
    content: str | None = None

    @field_validator("role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        role = value.lower()  # as Ollama reads it
        if role == "tool":
            raise ValueError("a tool's result (role 'tool') is not supported: trayllm does not call tools")
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"unknown role {value!r}: system, user or assistant")
        return role

    @model_validator(mode="after")
    def _sort(self) -> Message:
        self._ignored = sort_extras(self.model_extra or {}, rules_for("chat", "messages[]."), "messages[].")
        return self

    @property
    def text(self) -> str:
        return self.content or ""


class _Generating(_Lenient):
    """What /api/chat and /api/generate share: the model, streaming, the options."""

    model: str = Field(min_length=1)
    stream: bool | None = None  # null: the default, true
    options: Options | None = None

    def _sort_as(self, route: Route, parts: list[_Lenient]) -> None:
        ignored = sort_extras(self.model_extra or {}, rules_for(route), "")
        for part in parts:
            ignored += [name for name in part.ignored if name not in ignored]
        self._ignored = ignored

    @property
    def streams(self) -> bool:
        return self.stream is not False

    def sampling(self) -> dict[str, Any]:
        return {} if self.options is None else self.options.sampling()


class ChatRequest(_Generating):
    """POST /api/chat."""

    messages: list[Message] | None = None

    @model_validator(mode="after")
    def _sort(self) -> ChatRequest:
        self._sort_as("chat", [*(self.messages or []), *([self.options] if self.options else [])])
        return self


class GenerateRequest(_Generating):
    """POST /api/generate."""

    prompt: str | None = None
    system: str | None = None
    raw: bool | None = None

    @model_validator(mode="after")
    def _sort(self) -> GenerateRequest:
        if self.raw and self.system:
            raise ValueError("raw mode does not support template, system, or context")  # Ollama's words
        self._sort_as("generate", [self.options] if self.options else [])
        return self


class _Named(_Lenient):
    """A body that names one model: ``model``, or ``name``, the field's older name."""

    model: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _named(self) -> _Named:
        if not (self.model or self.name):
            raise ValueError("model is required")
        return self

    @property
    def wanted(self) -> str:
        return self.model or self.name or ""


class ShowRequest(_Named):
    """POST /api/show. Ollama's ``verbose`` adds nothing here."""


class PullRequest(_Named):
    """POST /api/pull: a Hugging Face model (trayllm.ollama_names). ``insecure`` changes nothing: the hub is
    HF_ENDPOINT's, over the scheme it names."""

    insecure: bool | None = None
    stream: bool | None = None  # null: the default, true

    @property
    def streams(self) -> bool:
        return self.stream is not False


# -- replies -----------------------------------------------------------------------------------------------


def timestamp(seconds: float | None = None) -> str:
    """An instant (now by default) as Ollama writes one: RFC 3339 in UTC, to the microsecond."""
    moment = datetime.now(timezone.utc) if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class _Reply(BaseModel):
    """One object of a /api/chat or /api/generate reply; the last (``done``) carries how it ended and what it
    took, durations in nanoseconds (the daemon's ``ollama_metrics`` says how each is measured)."""

    model: str
    created_at: str = Field(default_factory=timestamp)
    done: bool
    done_reason: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatReply(_Reply):
    message: AssistantMessage


class GenerateReply(_Reply):
    response: str


class ModelDetails(BaseModel):
    parent_model: str = ""
    format: str
    family: str
    families: list[str] | None
    parameter_size: str
    quantization_level: str
    context_length: int | None = None


class ListedModel(BaseModel):
    """An entry of GET /api/tags."""

    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails


class ListResponse(BaseModel):
    models: list[ListedModel]


class RunningModel(ListedModel):
    """An entry of GET /api/ps."""

    expires_at: str
    size_vram: int
    context_length: int


class ProcessResponse(BaseModel):
    models: list[RunningModel]


class ShowResponse(BaseModel):
    parameters: str
    details: ModelDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str


class ProgressResponse(BaseModel):
    """One line of a POST /api/pull reply (and the whole of one that does not stream): a step's ``status``, and
    for a file being fetched its ``digest`` and bytes ``completed`` of its ``total``."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class VersionResponse(BaseModel):
    version: str = OLLAMA_VERSION
    trayllm_version: str


def tagged(name: str) -> str:
    """A served model's name as Ollama lists one: with its tag, ``:latest`` when it has none."""
    return name if ":" in name.rsplit("/", 1)[-1] else name + LATEST


def untagged(asked: str, served: Collection[str]) -> str:
    """The served model a client means: ``asked`` itself, or without the ``:latest`` it added."""
    bare = asked.removesuffix(LATEST)
    return bare if asked not in served and bare in served else asked
