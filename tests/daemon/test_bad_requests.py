"""Bad input gets a 4xx in the route's own error shape, never a 5xx, and the daemon keeps serving.

The same battery goes to every generation route, each hostile value put where that API takes it (OpenAI's
fields at the top of the body, Ollama's sampling under ``options`` by its own names): OpenAI's chat and legacy
completions answer in OpenAI's error shape, Ollama's chat and generate in Ollama's ``{"error": "..."}``, and each
refused generation leaves exactly one record naming its API (and the model its body asked for). The raw bodies
(not JSON, not an object, too deep, ...) also go to ``/api/show`` and to Ollama's endpoints trayllm refuses,
which leave no record. The error bodies are the HTTP layer's: they are checked on a fake engine in this process.
That the real daemon process survives them, and the sampler's extreme values, are checked on the real model
(``slow``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fake_engine import FAKE_INFO
from inprocess_daemon import InProcessDaemon
from waiting import wait_for

from trayllm.ollama_rules import REFUSED_ROUTES, RULES
from trayllm.slo.objectives import CLIENT_FAULT
from trayllm.telemetry.reader import iter_records

MODEL = FAKE_INFO.name
MESSAGES = [{"role": "user", "content": "Say hi."}]
OLLAMA_OPTIONS = {rule.maps_to: rule.name.removeprefix("options.") for rule in RULES if rule.maps_to}
"""The daemon's sampling fields (OpenAI's names) under the names Ollama's ``options`` give them."""


@dataclass(frozen=True)
class Route:
    """A route that takes a JSON body, and how a hostile value gets into one of its bodies."""

    path: str
    ollama: bool
    saying: Callable[[str], dict[str, Any]] | None  # a body asking for a reply to this text; None: no generation

    def body(self, text: str = "Say hi.", **fields: Any) -> dict[str, Any]:
        """A body this route serves, with ``fields`` (named as OpenAI names them) where this API takes them."""
        assert self.saying is not None
        body = {"model": MODEL, **self.saying(text)}
        for name, value in fields.items():
            if self.ollama and name in OLLAMA_OPTIONS:
                body.setdefault("options", {})[OLLAMA_OPTIONS[name]] = value
            else:
                body[name] = value
        return body

    def named(self, field: str) -> str:
        return OLLAMA_OPTIONS.get(field, field) if self.ollama else field


def _chat(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def _prompt(text: str) -> dict[str, Any]:
    return {"prompt": text}


GENERATING = {
    "chat": Route("/v1/chat/completions", ollama=False, saying=_chat),
    "completions": Route("/v1/completions", ollama=False, saying=_prompt),
    "ollama chat": Route("/api/chat", ollama=True, saying=_chat),
    "ollama generate": Route("/api/generate", ollama=True, saying=_prompt),
}
ROUTES = {**GENERATING, "ollama show": Route("/api/show", ollama=True, saying=None)}

RAW_BODIES: dict[str, tuple[bytes, str]] = {
    "malformed JSON": (b'{"messages": [', "not valid JSON"),
    "empty body": (b"", "not valid JSON"),
    "not an object": (b"[1, 2]", "JSON object"),
    "non-UTF-8 bytes": (b'{"model": "\xff\xfe"}', "UTF-8"),
    "NaN": (b'{"model": "m", "temperature": NaN}', "NaN"),
    "unpaired surrogate": (b'{"model": "\\ud800"}', "surrogate"),
    "nested too deep": (b"[" * 5000 + b"]" * 5000, "deeper than"),
}
"""Bodies every JSON route refuses before reading a field: (body, what the message says)."""

FIELD_CASES: dict[str, tuple[dict[str, Any], int, str]] = {
    "temperature as text": ({"temperature": "hot"}, 400, "temperature"),
    "temperature too high": ({"temperature": 9}, 400, "temperature"),
    "top_p of zero": ({"top_p": 0}, 400, "top_p"),
    "seed beyond int64": ({"seed": 2**63}, 400, "seed"),
    "max_tokens as float": ({"max_tokens": 1.5}, 400, "max_tokens"),
    "huge max_tokens": ({"max_tokens": 10**9}, 400, "context"),
    "too many stops": ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    "an empty stop": ({"stop": ["a", ""]}, 400, "stop"),
    "frequency_penalty too high": ({"frequency_penalty": 2.5}, 400, "frequency_penalty"),
    "repetition_penalty below 1": ({"repetition_penalty": 0.5}, 400, "repetition_penalty"),
    "unknown model": ({"model": "llama-70b"}, 404, "llama-70b"),
}
"""Hostile values of the fields every generation route takes, by OpenAI's names: (fields, status, what the message
names, as the route names it)."""

LONG_TEXT = "word " * 40000  # longer than the context, whatever the route does to it

OWN_CASES: dict[str, dict[str, tuple[dict[str, Any], int, str]]] = {
    "chat": {
        "missing messages": ({"model": MODEL}, 400, "messages"),
        "empty messages": ({"messages": []}, 400, "messages"),
        "messages not a list": ({"messages": "hello"}, 400, "messages"),
        "wrong content type": ({"messages": [{"role": "user", "content": 5}]}, 400, "content"),
        "missing role": ({"messages": [{"content": "hi"}]}, 400, "role"),
        "unknown role": ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "role"),
        "system after user": ({"messages": [*MESSAGES, {"role": "system", "content": "x"}]}, 400, "system"),
        "unsupported field": (
            {"messages": MESSAGES, "tools": [{"type": "function", "function": {"name": "f"}}]},
            400,
            "tools",
        ),
        "unknown field": ({"messages": MESSAGES, "flavour": "mint"}, 400, "flavour"),
        "n above 1": ({"messages": MESSAGES, "n": 3}, 400, "n"),
        "negative max_tokens": ({"messages": MESSAGES, "max_tokens": -5}, 400, "max_tokens"),
        "zero max_tokens": ({"messages": MESSAGES, "max_tokens": 0}, 400, "max_tokens"),
    },
    "completions": {
        "missing prompt": ({"model": MODEL}, 400, "prompt"),
        "prompt a number": ({"prompt": 7}, 400, "prompt"),
        "two prompts": ({"prompt": ["a", "b"]}, 400, "one prompt"),
        "echo": ({"prompt": "hi", "echo": True}, 400, "echo"),
        "unknown field": ({"prompt": "hi", "messages": MESSAGES}, 400, "messages"),
        "zero max_tokens": ({"prompt": "hi", "max_tokens": 0}, 400, "max_tokens"),
    },
}
"""Each OpenAI route's own refusals (Ollama's are tests/daemon/test_ollama.py's)."""


@dataclass(frozen=True)
class Case:
    route: str
    body: bytes
    status: int
    needle: str
    asked: str | None = None  # the model a JSON body names, which its record must name too

    @classmethod
    def of(cls, route: str, body: dict[str, Any], status: int, needle: str) -> Case:
        asked = body.get("model")
        return cls(route, json.dumps(body).encode(), status, needle, asked if isinstance(asked, str) else None)


def battery() -> dict[str, Case]:
    """Every (route, hostile body) pair, by a readable id."""
    cases: dict[str, Case] = {}
    for name in ROUTES:
        for what, (body, needle) in RAW_BODIES.items():
            cases[f"{name}: {what}"] = Case(name, body, 400, needle)
    for name, route in GENERATING.items():
        for what, (fields, status, needle) in FIELD_CASES.items():
            cases[f"{name}: {what}"] = Case.of(name, route.body(**fields), status, route.named(needle))
        cases[f"{name}: prompt longer than the context"] = Case.of(name, route.body(LONG_TEXT), 400, "context")
    for name, own in OWN_CASES.items():
        for what, (body, status, needle) in own.items():
            cases[f"{name}: {what}"] = Case.of(name, body, status, needle)
    return cases


BATTERY = battery()


def assert_error_shape(route: Route, response: httpx.Response, needle: str) -> None:
    """A 4xx whose body is the route's API's error: OpenAI's object, or Ollama's one string."""
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["x-request-id"]
    if route.ollama:
        body = response.json()
        assert set(body) == {"error"} and isinstance(body["error"], str), body
        assert needle.lower() in body["error"].lower(), body
        return
    error = response.json()["error"]
    assert needle.lower() in error["message"].lower(), error
    assert error["type"] == "invalid_request_error" and error["code"], error


def records(daemon: InProcessDaemon) -> list[dict[str, Any]]:
    return list(iter_records(daemon.records)) if daemon.records.exists() else []


@pytest.mark.parametrize("case", list(BATTERY))
def test_bad_input_is_a_4xx_in_the_routes_own_shape_with_one_record(fake_engine_daemon: InProcessDaemon, case: str):
    bad = BATTERY[case]
    route = ROUTES[bad.route]
    with fake_engine_daemon.client() as client:
        response = client.post(route.path, content=bad.body, headers={"content-type": "application/json"})
    assert response.status_code == bad.status, response.text
    assert_error_shape(route, response, bad.needle)
    if route.saying is None:
        assert records(fake_engine_daemon) == [], "only generations leave records"
        return
    [record] = fake_engine_daemon.wait_records(1)
    assert record["event"]["id"] == response.headers["x-request-id"]
    assert record["event"]["outcome"] == "failure"
    assert record["llm"]["api"] == ("ollama" if route.ollama else "openai")
    if bad.asked is not None:
        assert record["gen_ai"]["request"]["model"] == bad.asked


@pytest.mark.parametrize("refused", REFUSED_ROUTES, ids=[refused.path for refused in REFUSED_ROUTES])
def test_ollamas_refused_endpoints_answer_any_body_in_ollamas_shape(fake_engine_daemon: InProcessDaemon, refused):
    path = refused.path.replace("{digest}", "sha256-0123")
    with fake_engine_daemon.client() as client:
        for method in refused.methods:
            for body, _ in RAW_BODIES.values():
                response = client.request(method, path, content=body)
                assert response.status_code == 400, (method, body[:40], response.text)
                if method != "HEAD":
                    assert response.json() == {"error": f"{method} {path}: {refused.message}"}
    assert records(fake_engine_daemon) == []


@pytest.mark.parametrize("name", list(ROUTES))
def test_a_wrong_method_and_an_unknown_endpoint_use_the_apis_error_shape(fake_engine_daemon, name: str) -> None:
    route = ROUTES[name]
    prefix = "/api" if route.ollama else "/v1"
    with fake_engine_daemon.client() as client:
        wrong_method = client.get(route.path)
        missing = client.post(f"{prefix}/nothing-here", json={})
    assert (wrong_method.status_code, missing.status_code) == (405, 404)
    assert_error_shape(route, wrong_method, "not allowed")
    assert_error_shape(route, missing, "no such endpoint")
    if not route.ollama:
        assert wrong_method.json()["error"]["code"] == "method_not_allowed"
        assert missing.json()["error"]["code"] == "not_found"


@pytest.mark.slow
def test_daemon_answers_normally_after_the_battery(daemon) -> None:
    with daemon.client() as client:
        for case in BATTERY.values():
            response = client.post(ROUTES[case.route].path, content=case.body)
            assert response.status_code == case.status, (case, response.text)
    with daemon.client() as client:
        ok = client.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 5, "temperature": 0})
        ollama = client.post(
            "/api/generate", json={**GENERATING["ollama generate"].body(max_tokens=5), "stream": False}
        )
        health = client.get("/healthz")
    assert ok.status_code == 200, ok.text
    assert ok.json()["choices"][0]["message"]["content"]
    assert ollama.status_code == 200 and ollama.json()["response"], ollama.text
    assert health.json() == {"status": "ok"}
    assert daemon.process.poll() is None


@pytest.mark.slow
def test_extreme_sampling_values_fail_or_serve_alone_while_other_replies_stream(daemon) -> None:
    """A seed out of range is a 400 naming it; a temperature or top_p too small for float32 is served as
    greedy. Either way the three replies streaming meanwhile finish normally, and the refused request
    leaves one record, a client error that the error budget does not count."""
    records_path = daemon.records
    # Greedy, this story runs past 100 tokens; the three short requests below take about 12 of its steps.
    story = {
        "messages": [{"role": "user", "content": "Write a very long story about a lighthouse."}],
        "max_tokens": 48,
        "temperature": 0,
        "stream": True,
    }
    question = {"messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 4}
    with ExitStack() as stack:
        streams = [
            stack.enter_context(stack.enter_context(daemon.client()).stream("POST", "/v1/chat/completions", json=story))
            for _ in range(3)
        ]
        wait_for(lambda: daemon.status()["queue"]["in_flight"] == 3, timeout=60)  # all three are decoding
        with daemon.client() as client:
            greedy = client.post("/v1/chat/completions", json={**question, "temperature": 0})
            refused = client.post("/v1/chat/completions", json={**question, "seed": 2**80})
            served = {
                field: client.post("/v1/chat/completions", json={**question, field: 1e-300})
                for field in ("temperature", "top_p")
            }
            assert daemon.status()["queue"]["in_flight"] == 3, "the streams ended while the others were served"
        endings = ["\n".join(stream.iter_lines()) for stream in streams]

    for ending in endings:
        assert '"finish_reason":"length"' in ending and '"error"' not in ending, ending
        assert ending.rstrip().endswith("data: [DONE]"), ending
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "seed"
    assert greedy.status_code == 200, greedy.text
    reply = greedy.json()["choices"][0]["message"]["content"]
    for field, response in served.items():
        assert response.status_code == 200, (field, response.text)
        assert response.json()["choices"][0]["message"]["content"] == reply, f"{field} 1e-300 is not greedy"

    outcomes = {response.headers["x-request-id"]: "success" for response in [*streams, greedy, *served.values()]}
    outcomes[refused.headers["x-request-id"]] = "failure"

    def ours() -> list[dict] | None:
        found = [r for r in iter_records(records_path) if r["event"]["id"] in outcomes]
        return found if len(found) >= len(outcomes) else None

    records = wait_for(ours, timeout=30)
    assert sorted(r["event"]["id"] for r in records) == sorted(outcomes), "one record per request"
    for record in records:
        assert record["event"]["outcome"] == outcomes[record["event"]["id"]], record
    [refusal] = [r for r in records if r["event"]["outcome"] == "failure"]
    assert refusal["error"]["type"] == "invalid_request" and refusal["error"]["type"] in CLIENT_FAULT
