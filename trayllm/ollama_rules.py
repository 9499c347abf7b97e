"""What trayllm does with each of Ollama's request fields and options on /api/chat and /api/generate (mapped,
ignored, refused), and which of Ollama's endpoints it refuses: one table, read by the request types
(trayllm.ollama_api) and by the docs, so neither can drift from the other.

Ollama ignores the fields and options it does not know, and clients written for it send plenty (``top_k``,
``num_ctx``, ``keep_alive``); trayllm ignores them too, but visibly: the reply lists them in its
``X-Trayllm-Ignored`` header and the daemon logs them. A field whose value asks for what trayllm cannot do
(images, tools, JSON mode, thinking, log probabilities) is refused with a 400 naming it; its "off" value
(false, 0, "", [], null) asks for nothing and is accepted.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from trayllm.api import MAX_STOP_SEQUENCES

Handling = Literal["mapped", "ignored", "refused"]
Route = Literal["chat", "generate"]
BOTH: tuple[Route, ...] = ("chat", "generate")


@dataclass(frozen=True)
class Rule:
    """What trayllm does with one request field (``messages[].x`` in a message, ``options.x`` in the options)."""

    name: str
    handling: Handling
    note: str  # mapped: what it becomes; ignored and refused: why
    routes: tuple[Route, ...] = BOTH
    maps_to: str | None = None  # an option's field in the daemon's Generation


_SAMPLER = "trayllm's sampler has temperature, top_p and the repetition, frequency and presence penalties only"
_LOADING = "how the model is loaded is the daemon's settings (device, dtype, quantization), not a request's"

RULES: tuple[Rule, ...] = (
    Rule("model", "mapped", "a served model's name, with or without ':latest' (GET /api/tags lists them)"),
    Rule("stream", "mapped", "true (the default): NDJSON, one object per line, the last with done true; false: one"),
    Rule(
        "messages",
        "mapped",
        "through the model's chat template (the oldest turns dropped when the context is full); none: Ollama's "
        "load request, answered at once with done_reason 'load', no generation and no record",
        ("chat",),
    ),
    Rule(
        "prompt",
        "mapped",
        "a user message through the model's chat template, or as it is with raw; empty: Ollama's load request, "
        "answered at once with done_reason 'load', no generation and no record",
        ("generate",),
    ),
    Rule("system", "mapped", "a system message before the prompt; refused with raw, as Ollama does", ("generate",)),
    Rule(
        "raw", "mapped", "true: the prompt goes to the model as it is, untemplated (a text completion)", ("generate",)
    ),
    Rule("options", "mapped", "see options.*; unset ones take the daemon's defaults, not Ollama's"),
    Rule("keep_alive", "ignored", "the daemon keeps its model loaded while it runs (`trayllm use` switches it)"),
    Rule("truncate", "ignored", "a conversation too long for the context always loses its oldest turns"),
    Rule("shift", "ignored", "a reply that fills the context ends there (done_reason 'length')"),
    Rule("format", "refused", "JSON mode and structured outputs are not supported"),
    Rule("tools", "refused", "tool calling is not supported", ("chat",)),
    Rule("think", "refused", "a thinking model's separate reasoning is not supported (false is accepted)"),
    Rule("logprobs", "refused", "log probabilities are not returned"),
    Rule("top_logprobs", "refused", "log probabilities are not returned"),
    Rule("images", "refused", "trayllm serves text-only models", ("generate",)),
    Rule("suffix", "refused", "fill-in-the-middle is not supported", ("generate",)),
    Rule(
        "template",
        "refused",
        "the model's own chat template is used; send raw: true with a prompt already formatted instead",
        ("generate",),
    ),
    Rule(
        "context",
        "refused",
        "the deprecated token context is never returned by trayllm; send the conversation to /api/chat instead",
        ("generate",),
    ),
    Rule("messages[].role", "mapped", "system, user or assistant, in any case", ("chat",)),
    Rule("messages[].content", "mapped", "the message's text", ("chat",)),
    Rule("messages[].thinking", "ignored", "an earlier turn's reasoning is not sent to the model", ("chat",)),
    Rule("messages[].images", "refused", "trayllm serves text-only models", ("chat",)),
    Rule("messages[].tool_calls", "refused", "tool calling is not supported", ("chat",)),
    Rule("messages[].tool_name", "refused", "tool calling is not supported", ("chat",)),
    Rule("messages[].tool_call_id", "refused", "tool calling is not supported", ("chat",)),
    Rule("options.num_predict", "mapped", "max_tokens; 0 or less (Ollama's -1, -2): the default", maps_to="max_tokens"),
    Rule("options.temperature", "mapped", "temperature, 0 to 2 (0: greedy)", maps_to="temperature"),
    Rule("options.top_p", "mapped", "top_p, above 0 up to 1", maps_to="top_p"),
    Rule("options.seed", "mapped", "seed; below 0 (Ollama's -1): a random one", maps_to="seed"),
    Rule("options.stop", "mapped", f"stop strings, at most {MAX_STOP_SEQUENCES}, none empty", maps_to="stop"),
    Rule("options.repeat_penalty", "mapped", "repetition_penalty, 1 to 2 (1: off)", maps_to="repetition_penalty"),
    Rule("options.frequency_penalty", "mapped", "frequency_penalty, -2 to 2", maps_to="frequency_penalty"),
    Rule("options.presence_penalty", "mapped", "presence_penalty, -2 to 2", maps_to="presence_penalty"),
    *(
        Rule(f"options.{name}", "ignored", _SAMPLER)
        for name in (
            "top_k",
            "min_p",
            "typical_p",
            "tfs_z",
            "repeat_last_n",
            "penalize_newline",
            "mirostat",
            "mirostat_tau",
            "mirostat_eta",
            "num_keep",
        )
    ),
    Rule("options.num_ctx", "ignored", "the context is the model's own (context_length in POST /api/show)"),
    *(
        Rule(f"options.{name}", "ignored", _LOADING)
        for name in (
            "num_batch",
            "num_gpu",
            "main_gpu",
            "num_thread",
            "numa",
            "low_vram",
            "f16_kv",
            "logits_all",
            "vocab_only",
            "use_mmap",
            "use_mlock",
            "embedding_only",
            "draft_num_predict",
        )
    ),
)
"""Every request field and option trayllm knows on /api/chat and /api/generate. One not listed is ignored
(and reported), as Ollama ignores it."""


@dataclass(frozen=True)
class RefusedRoute:
    """An Ollama endpoint trayllm answers with a 400 that says what to do instead."""

    path: str
    methods: tuple[str, ...]
    message: str


_NO_STORE = "trayllm keeps no model store of its own: `trayllm models` lists the models on this machine"
REFUSED_ROUTES: tuple[RefusedRoute, ...] = (
    RefusedRoute("/api/push", ("POST",), f"trayllm does not push models anywhere; {_NO_STORE}"),
    RefusedRoute(
        "/api/create",
        ("POST",),
        "trayllm does not create models: `trayllm use PATH` serves a .gguf file or a Hugging Face directory",
    ),
    RefusedRoute(
        "/api/blobs/{digest}",
        ("POST", "HEAD"),
        "trayllm does not create models: `trayllm use PATH` serves a .gguf file or a Hugging Face directory",
    ),
    RefusedRoute("/api/copy", ("POST",), f"trayllm does not copy or rename models; {_NO_STORE}"),
    RefusedRoute("/api/delete", ("DELETE",), f"trayllm does not delete models; {_NO_STORE}"),
    RefusedRoute("/api/embed", ("POST",), "embeddings are not supported: trayllm serves chat models"),
    RefusedRoute("/api/embeddings", ("POST",), "embeddings are not supported: trayllm serves chat models"),
)


PULL_OFF = RefusedRoute(
    "/api/pull",
    ("POST",),
    "the daemon's downloads are turned off (api_pull = false): run `trayllm pull HUB_ID` in a terminal, then "
    "`trayllm use HUB_ID`, or set api_pull = true",
)
"""POST /api/pull where the ``api_pull`` setting turns it off; otherwise it downloads (trayllm.daemon.ollama_pull)."""


@functools.cache
def rules_for(route: Route, scope: str = "") -> Mapping[str, Rule]:
    """The rules of ``route`` in one scope ("", "messages[]." or "options."), keyed by the field's own name."""
    return {
        rule.name.removeprefix(scope): rule
        for rule in RULES
        if route in rule.routes and rule.name.startswith(scope) and "." not in rule.name.removeprefix(scope)
    }


def sort_extras(extras: Mapping[str, Any], rules: Mapping[str, Rule], where: str) -> list[str]:
    """The fields of ``extras`` (those a model does not declare) that are ignored: a known ignored one with a
    value, or an unknown one; ValueError naming a refused one whose value asks for something."""
    ignored = []
    for name, value in extras.items():
        rule = rules.get(name)
        if rule is not None and rule.handling == "refused":
            if value:  # false, 0, "", [], {} and null ask for nothing
                raise ValueError(f"'{name}' is not supported by trayllm: {rule.note}")
        elif value is not None:
            ignored.append(f"{where}{name}")
    return ignored
