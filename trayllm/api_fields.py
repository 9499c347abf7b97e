"""Which OpenAI request fields trayllm takes, with which values, and what it does with fields it does not know.

OpenAI's API has many fields for things trayllm does not do (tools, log probabilities, JSON schemas, several
choices per request, ...). Clients and front ends often send them anyway with the value that asks for nothing
(``logprobs: false``, ``tools: []``, ``n: 1``, ``response_format: {"type": "text"}``) or as an explicit
``null``. So each such field has a rule here: null and the values that ask for what trayllm does are accepted
(and need nothing more: they change nothing); any other value is a 400 whose ``param`` names the field and whose
message says what is accepted. ``CHAT_FIELD_RULES`` and ``COMPLETION_FIELD_RULES`` are the one table of them
(docs/API.md is built from them); the fields trayllm acts on (temperature, stop, ...) are the request models'
own, in trayllm/api.py.

A field that is in neither, OpenAI's or not, is refused (400, ``param`` naming it) rather than ignored, on every
route alike: a vendor's sampling option (vLLM's ``top_k`` or ``min_p``, say) that trayllm silently dropped would
leave the client believing it had an effect. Refusing costs the clients people use nothing: captured on the
wire, the openai SDK, langchain-openai (``ChatOpenAI`` and the legacy ``OpenAI``), LiteLLM (``openai/``,
``hosted_vllm/`` and ``text-completion-openai/`` models, ``completion`` and ``text_completion``) and simonw's
``llm`` send no field that is not OpenAI's; a vendor field reaches a body only when its user writes it there
(``extra_body``), and then hearing at once that it does nothing here is what they need. The only explicit nulls
seen were langchain-openai's legacy ``OpenAI`` sending ``logprobs: null`` and ``seed: null``, which is why null
is accepted for every optional field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from trayllm.errors import InvalidRequest


@dataclass(frozen=True)
class FieldRule:
    """An OpenAI field trayllm takes only with values that ask for nothing it does not do; null always passes.

    ``examples`` and ``counterexamples`` are values of each kind, for the docs and for the tests that keep this
    table and the daemon's behaviour the same."""

    name: str
    accepted: str  # the values taken besides null ("" for none), as docs/API.md says them
    refused: str  # why any other value is refused
    accepts: Callable[[Any], bool]  # on a JSON value other than null
    examples: tuple[Any, ...]
    counterexamples: tuple[Any, ...]

    @property
    def takes(self) -> str:
        """Every value taken, null included, as the 400 says them."""
        return f"{self.accepted}, or null" if self.accepted else "null only"


def _equals(wanted: Any) -> Callable[[Any], bool]:
    """Equal to ``wanted`` and of its JSON type (``True == 1`` and ``1.0 == 1`` in Python, not in JSON)."""
    return lambda value: type(value) is type(wanted) and value == wanted


def _one_of(*wanted: str) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and value in wanted


def _never(_: Any) -> bool:
    return False


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _strings(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


N = FieldRule("n", "1", "one choice per request: send several requests", _equals(1), (1,), (2, 1.0, True))
LOGIT_BIAS = FieldRule(
    "logit_bias", "{} (no bias)", "trayllm does not bias token logits", _equals({}), ({},), ({"50256": -100},)
)

CHAT_FIELD_RULES: tuple[FieldRule, ...] = (
    FieldRule("audio", "", "trayllm replies in text, never audio", _never, (), ({"format": "wav"},)),
    FieldRule("function_call", '"none"', "trayllm does not call functions", _one_of("none"), ("none",), ("auto",)),
    FieldRule("functions", "[] (none)", "trayllm does not call functions", _equals([]), ([],), ([{"name": "f"}],)),
    LOGIT_BIAS,
    FieldRule("logprobs", "false", "trayllm returns no log probabilities", _equals(False), (False,), (True,)),
    FieldRule(
        "metadata",
        "an object of strings (OpenAI keeps it with stored completions; trayllm ignores it)",
        "it must be an object whose values are strings",
        _strings,
        ({"project": "demo"},),
        ("demo", {"count": 3}),
    ),
    FieldRule("modalities", '["text"]', "trayllm replies in text only", _equals(["text"]), (["text"],), (["audio"],)),
    FieldRule("moderation", "", "trayllm does not moderate", _never, (), ({"mode": "block"},)),
    N,
    FieldRule(
        "parallel_tool_calls",
        "true or false (no tools are taken, so there is nothing to call in parallel)",
        "it must be a boolean",
        lambda value: isinstance(value, bool),
        (True, False),
        ("yes",),
    ),
    FieldRule("prediction", "", "trayllm has no predicted outputs", _never, (), ({"type": "content"},)),
    FieldRule(
        "prompt_cache_key",
        "a string (a hint for OpenAI's cache; ignored)",
        "it must be a string",
        _is_str,
        ("k",),
        (1,),
    ),
    FieldRule("prompt_cache_options", "", "trayllm has no prompt cache to set", _never, (), ({"ttl": "30m"},)),
    FieldRule(
        "prompt_cache_retention",
        '"in_memory" (OpenAI\'s default)',
        "trayllm keeps no prompt cache between requests",
        _one_of("in_memory"),
        ("in_memory",),
        ("24h",),
    ),
    FieldRule(
        "reasoning_effort", '"none"', "the model has no reasoning effort to set", _one_of("none"), ("none",), ("high",)
    ),
    FieldRule(
        "response_format",
        '{"type": "text"}',
        "trayllm has no JSON mode and follows no JSON schema",
        _equals({"type": "text"}),
        ({"type": "text"},),
        ({"type": "json_object"}, {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
    ),
    FieldRule(
        "safety_identifier",
        "a string (OpenAI's abuse tracking; ignored)",
        "it must be a string",
        _is_str,
        ("u1",),
        (1,),
    ),
    FieldRule(
        "service_tier",
        '"auto" or "default"',
        "trayllm has one processing tier",
        _one_of("auto", "default"),
        ("auto", "default"),
        ("flex", "priority"),
    ),
    FieldRule(
        "store", "false", "trayllm does not store completions for later retrieval", _equals(False), (False,), (True,)
    ),
    FieldRule("tool_choice", '"none"', "trayllm does not call tools", _one_of("none"), ("none",), ("auto", "required")),
    FieldRule(
        "tools",
        "[] (none)",
        "trayllm does not call tools",
        _equals([]),
        ([],),
        ([{"type": "function", "function": {"name": "f"}}],),
    ),
    FieldRule("top_logprobs", "0", "trayllm returns no log probabilities", _equals(0), (0,), (5,)),
    FieldRule(
        "verbosity",
        '"medium" (OpenAI\'s default)',
        "the model has no verbosity to set",
        _one_of("medium"),
        ("medium",),
        ("low",),
    ),
    FieldRule("web_search_options", "", "trayllm does not search the web", _never, (), ({},)),
)
"""POST /v1/chat/completions: OpenAI's fields beyond those trayllm acts on, and the values it takes."""

COMPLETION_FIELD_RULES: tuple[FieldRule, ...] = (
    FieldRule("best_of", "1", "one candidate per request", _equals(1), (1,), (3,)),
    FieldRule("echo", "false", "the reply does not repeat the prompt", _equals(False), (False,), (True,)),
    LOGIT_BIAS,
    FieldRule("logprobs", "0", "trayllm returns no log probabilities", _equals(0), (0,), (1, 5)),
    N,
    FieldRule("suffix", "", "trayllm does not insert text before a suffix", _never, (), ("</code>", "")),
)
"""POST /v1/completions: OpenAI's legacy fields beyond those trayllm acts on, and the values it takes."""


def within_rules(data: Any, rules: Collection[FieldRule], known: Collection[str]) -> Any:
    """``data`` (a request body) without the fields ``rules`` cover, each checked against its rule; InvalidRequest
    (``param``: the field) for a value a rule refuses or a field neither the rules nor ``known`` name."""
    if not isinstance(data, Mapping):
        return data  # the model's own validation says what is wrong
    by_name = {rule.name: rule for rule in rules}
    kept: dict[str, Any] = {}
    for name, value in data.items():
        rule = by_name.get(name)
        if rule is None:
            if name not in known:
                raise InvalidRequest(
                    f"unknown field {name!r}: trayllm refuses fields it does not know rather than ignore them, so "
                    "that no option silently has no effect",
                    param=name,
                )
            kept[name] = value
        elif value is not None and not rule.accepts(value):
            shown = json.dumps(value, default=str)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise InvalidRequest(
                f"{name}: {shown} is not supported ({rule.refused}); accepted: {rule.takes}", param=name
            )
    return kept
