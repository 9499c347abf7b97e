"""Ollama's request bodies as trayllm reads them (trayllm.ollama_api): what is mapped, ignored and refused, by the
one table the docs are made from (trayllm.ollama_rules)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from pydantic import ValidationError

from trayllm.daemon.generation import Generation
from trayllm.ollama_api import ChatRequest, GenerateRequest, Options, ShowRequest, tagged, timestamp, untagged
from trayllm.ollama_rules import RULES, rules_for

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def refusal(schema: type, body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        schema.model_validate(body)
    return str(caught.value)


def test_every_mapped_option_lands_on_a_generation_field_and_every_declared_option_is_mapped() -> None:
    fields = {f.name for f in dataclasses.fields(Generation)}
    mapped = {rule.name.removeprefix("options."): rule.maps_to for rule in RULES if rule.maps_to is not None}
    assert set(mapped.values()) <= fields
    assert set(mapped) == set(Options.model_fields)


def test_options_map_to_the_daemons_names_and_ollamas_sentinels_mean_the_default() -> None:
    options = {
        "num_predict": 64,
        "temperature": 0.5,
        "top_p": 0.8,
        "seed": 7,
        "stop": ["\n", "user:"],
        "repeat_penalty": 1.2,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
    }
    assert Options.model_validate(options).sampling() == {
        "max_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.8,
        "seed": 7,
        "stop": ("\n", "user:"),
        "repetition_penalty": 1.2,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
    }
    for no_limit in (-1, -2, 0):
        assert Options.model_validate({"num_predict": no_limit, "seed": -1}).sampling() == {}


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("temperature", 2.5),
        ("temperature", "0.5"),  # a string is no number, as Ollama says too
        ("top_p", 0),
        ("repeat_penalty", 0.5),
        ("presence_penalty", 3),
        ("stop", ["a", ""]),
        ("stop", "a"),  # Ollama's stop is an array
        ("stop", ["a", "b", "c", "d", "e"]),
        ("num_predict", 1.5),
        ("seed", 2**64),
    ],
)
def test_a_mapped_option_out_of_range_or_of_the_wrong_type_is_refused_by_its_path(option: str, value: Any) -> None:
    assert f"options.{option}" in refusal(ChatRequest, {**CHAT, "options": {option: value}})


def test_ignored_and_unknown_fields_are_listed_by_path_once_in_the_order_sent() -> None:
    body = ChatRequest.model_validate(
        {
            "model": "m",
            "keep_alive": "5m",
            "messages": [
                {"role": "user", "content": "a", "thinking": "hm", "colour": "red"},
                {"role": "assistant", "content": "b", "thinking": "hm"},
            ],
            "options": {"top_k": 40, "num_ctx": 4096, "temperature": 0.1, "zzz": 1, "min_p": None},
            "vendor_flag": True,
            "truncate": None,  # null: not sent
        }
    )
    assert body.ignored == [
        "keep_alive",
        "vendor_flag",
        "messages[].thinking",
        "messages[].colour",
        "options.top_k",
        "options.num_ctx",
        "options.zzz",
    ]
    assert body.sampling() == {"temperature": 0.1}


@pytest.mark.parametrize(
    ("field", "asking", "off"),
    [
        ("format", "json", ""),
        ("format", {"type": "object"}, None),
        ("tools", [{"type": "function", "function": {"name": "f"}}], []),
        ("think", True, False),
        ("think", "high", None),
        ("logprobs", True, False),
        ("top_logprobs", 5, 0),
    ],
)
def test_a_chat_field_asking_for_what_trayllm_lacks_is_refused_by_name_and_its_off_value_accepted(
    field: str, asking: Any, off: Any
) -> None:
    assert f"'{field}' is not supported by trayllm" in refusal(ChatRequest, {**CHAT, field: asking})
    accepted = ChatRequest.model_validate({**CHAT, field: off})
    assert accepted.ignored == []


@pytest.mark.parametrize(
    ("field", "asking"),
    [("images", ["aGk="]), ("suffix", "return x"), ("template", "{{ .Prompt }}"), ("context", [1, 2, 3])],
)
def test_a_generate_field_asking_for_what_trayllm_lacks_is_refused_by_name(field: str, asking: Any) -> None:
    assert f"'{field}' is not supported by trayllm" in refusal(GenerateRequest, {"model": "m", field: asking})


@pytest.mark.parametrize("field", ["images", "tool_calls", "tool_name", "tool_call_id"])
def test_a_message_asking_for_images_or_tools_is_refused_with_its_place(field: str) -> None:
    value = "x" if field.startswith("tool_") and field != "tool_calls" else [{"x": 1}]
    body = {"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "user", field: value}]}
    message = refusal(ChatRequest, body)
    assert "messages.1" in message and f"'{field}' is not supported" in message


def test_roles_are_read_in_any_case_and_tool_or_unknown_roles_are_refused() -> None:
    body = ChatRequest.model_validate({"model": "m", "messages": [{"role": "SYSTEM", "content": None}]})
    assert body.messages is not None and (body.messages[0].role, body.messages[0].text) == ("system", "")
    assert "role 'tool'" in refusal(ChatRequest, {"model": "m", "messages": [{"role": "tool", "content": "42"}]})
    assert "unknown role 'robot'" in refusal(ChatRequest, {"model": "m", "messages": [{"role": "robot"}]})


def test_generate_refuses_a_system_prompt_with_raw_as_ollama_does_and_streams_unless_told_not_to() -> None:
    assert "raw mode does not support" in refusal(GenerateRequest, {"model": "m", "raw": True, "system": "s"})
    assert GenerateRequest.model_validate({"model": "m", "prompt": "p"}).streams
    assert GenerateRequest.model_validate({"model": "m", "stream": None}).streams
    assert not GenerateRequest.model_validate({"model": "m", "stream": False}).streams
    assert "stream" in refusal(GenerateRequest, {"model": "m", "stream": "no"})


def test_a_model_is_required_everywhere() -> None:
    assert "model" in refusal(ChatRequest, {"messages": []})
    assert "model" in refusal(GenerateRequest, {"model": ""})
    assert "model is required" in refusal(ShowRequest, {})
    assert ShowRequest.model_validate({"name": "old-style"}).wanted == "old-style"


def test_each_rule_is_known_to_the_routes_it_names_and_names_are_unique() -> None:
    names = [(rule.name, route) for rule in RULES for route in rule.routes]
    assert len(names) == len(set(names))
    assert "tools" in rules_for("chat") and "tools" not in rules_for("generate")
    assert "role" in rules_for("chat", "messages[].") and "top_k" in rules_for("generate", "options.")


def test_names_go_with_and_without_the_latest_tag() -> None:
    assert tagged("smollm2-135m-instruct") == "smollm2-135m-instruct:latest"
    assert tagged("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B:latest"
    assert tagged("llama3.2:3b") == "llama3.2:3b"
    served = ["smollm2-135m-instruct", "odd:latest"]
    assert untagged("smollm2-135m-instruct:latest", served) == "smollm2-135m-instruct"
    assert untagged("odd:latest", served) == "odd:latest"
    assert untagged("other:latest", served) == "other:latest"  # not served: the 404 names what was asked


def test_timestamps_are_rfc3339_in_utc_to_the_microsecond() -> None:
    assert timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", timestamp())
