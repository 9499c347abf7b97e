"""OpenAI's fields on both OpenAI routes, driven by trayllm/api_fields.py's table, so the table (and docs/API.md,
built from it) cannot drift from what the daemon does: every value the table accepts is served, every value it
refuses is a 400 naming the field, null is taken for every optional field the openai SDK knows, and a field nobody
knows is refused by name."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from inprocess_daemon import InProcessDaemon
from openai.types import completion_create_params
from openai.types.chat import completion_create_params as chat_create_params

from trayllm.api import ChatCompletionRequest, CompletionRequest
from trayllm.api_fields import CHAT_FIELD_RULES, COMPLETION_FIELD_RULES, FieldRule

CHAT = ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hello there"}]}, CHAT_FIELD_RULES)
COMPLETIONS = ("/v1/completions", {"prompt": "hello there"}, COMPLETION_FIELD_RULES)
ROUTES = {"chat": CHAT, "completions": COMPLETIONS}


def cases(kind: str) -> list[Any]:
    """(route, field, value) for every example (``kind`` "accepted") or counterexample ("refused") in the tables."""
    found = []
    for route, (_, _, rules) in ROUTES.items():
        for rule in rules:
            for value in rule.examples if kind == "accepted" else rule.counterexamples:
                found.append(pytest.param(route, rule.name, value, id=f"{route}-{rule.name}={value!r}"))
    return found


def post(daemon: InProcessDaemon, route: str, **fields: Any) -> httpx.Response:
    path, body, _ = ROUTES[route]
    with daemon.client() as client:
        return client.post(path, json={**body, **fields})


@pytest.mark.parametrize(("route", "field", "value"), cases("accepted"))
def test_a_value_that_asks_for_nothing_missing_is_served(
    fake_engine_daemon: InProcessDaemon, route: str, field: str, value: Any
) -> None:
    response = post(fake_engine_daemon, route, **{field: value})
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice.get("text", choice.get("message", {}).get("content")) == "hello there"


@pytest.mark.parametrize(("route", "field", "value"), cases("refused"))
def test_a_value_that_asks_for_what_trayllm_lacks_is_a_400_naming_the_field(
    fake_engine_daemon: InProcessDaemon, route: str, field: str, value: Any
) -> None:
    response = post(fake_engine_daemon, route, **{field: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field and error["message"].startswith(f"{field}: ")
    rule = next(rule for rule in ROUTES[route][2] if rule.name == field)
    assert f"accepted: {rule.takes}" in error["message"]


def test_every_rule_has_a_refused_value_and_null_only_rules_no_accepted_one() -> None:
    for rule in CHAT_FIELD_RULES + COMPLETION_FIELD_RULES:
        assert rule.counterexamples, rule.name
        assert bool(rule.examples) == bool(rule.accepted), rule.name
        assert not any(rule.accepts(value) for value in rule.counterexamples), rule.name
        assert all(rule.accepts(value) for value in rule.examples), rule.name


def sdk_fields(params: Any) -> set[str]:
    """Every field of an openai SDK request TypedDict."""
    return set(params.__required_keys__ | params.__optional_keys__)


@pytest.mark.parametrize(
    ("route", "params", "model", "required"),
    [
        ("chat", chat_create_params.CompletionCreateParamsBase, ChatCompletionRequest, {"messages", "model"}),
        ("completions", completion_create_params.CompletionCreateParamsBase, CompletionRequest, {"prompt", "model"}),
    ],
)
def test_null_is_taken_for_every_optional_field_the_openai_sdk_sends(
    fake_engine_daemon: InProcessDaemon, route: str, params: Any, model: Any, required: set[str]
) -> None:
    rules: tuple[FieldRule, ...] = ROUTES[route][2]
    known = set(model.model_fields) | {rule.name for rule in rules}
    assert sdk_fields(params) - known == set(), "an OpenAI field this route neither acts on nor has a rule for"
    nulls = dict.fromkeys(sdk_fields(params) - required)
    response = post(fake_engine_daemon, route, **nulls)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("field", ["top_k", "min_p", "chat_template_kwargs"])  # vLLM's, through extra_body
def test_a_field_nobody_here_knows_is_refused_by_name(
    fake_engine_daemon: InProcessDaemon, route: str, field: str
) -> None:
    response = post(fake_engine_daemon, route, **{field: 1})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == field and f"unknown field {field!r}" in error["message"]
