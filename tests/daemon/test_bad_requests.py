"""Bad input gets a 4xx with an OpenAI error body, and the daemon keeps serving."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Say hi."}]

BAD_BODIES: dict[str, tuple[bytes, int, str]] = {
    "malformed JSON": (b'{"messages": [', 400, "not valid JSON"),
    "not an object": (b"[1, 2]", 400, "JSON object"),
    "non-UTF-8 bytes": (b'{"messages": "\xff\xfe"}', 400, "UTF-8"),
    "missing messages": (json.dumps({"model": "smollm2-135m-instruct"}).encode(), 400, "messages"),
    "empty messages": (json.dumps({"messages": []}).encode(), 400, "messages"),
    "messages not a list": (json.dumps({"messages": "hello"}).encode(), 400, "messages"),
    "wrong content type": (json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), 400, "content"),
    "missing role": (json.dumps({"messages": [{"content": "hi"}]}).encode(), 400, "role"),
    "unknown role": (json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}).encode(), 400, "role"),
    "temperature as text": (json.dumps({"messages": MESSAGES, "temperature": "hot"}).encode(), 400, "temperature"),
    "temperature too high": (json.dumps({"messages": MESSAGES, "temperature": 9}).encode(), 400, "temperature"),
    "negative max_tokens": (json.dumps({"messages": MESSAGES, "max_tokens": -5}).encode(), 400, "max_tokens"),
    "zero max_tokens": (json.dumps({"messages": MESSAGES, "max_tokens": 0}).encode(), 400, "max_tokens"),
    "huge max_tokens": (json.dumps({"messages": MESSAGES, "max_tokens": 10**9}).encode(), 400, "context"),
    "max_tokens as float": (json.dumps({"messages": MESSAGES, "max_tokens": 1.5}).encode(), 400, "max_tokens"),
    "unknown model": (json.dumps({"model": "llama-70b", "messages": MESSAGES}).encode(), 404, "llama-70b"),
    "unsupported field": (json.dumps({"messages": MESSAGES, "tools": []}).encode(), 400, "tools"),
    "unknown field": (json.dumps({"messages": MESSAGES, "flavour": "mint"}).encode(), 400, "flavour"),
    "n above 1": (json.dumps({"messages": MESSAGES, "n": 3}).encode(), 400, "n"),
    "too many stops": (json.dumps({"messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}).encode(), 400, "stop"),
    "system after user": (json.dumps({"messages": MESSAGES + [{"role": "system", "content": "x"}]}).encode(),
                          400, "system"),
    "prompt longer than the context": (
        json.dumps({"messages": [{"role": "user", "content": "word " * 40000}]}).encode(), 400, "context"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_request_gets_openai_error(daemon, case: str) -> None:
    body, status, needle = BAD_BODIES[case]
    with daemon.client() as client:
        response = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle.lower() in error["message"].lower()
    assert error["type"] == "invalid_request_error"
    assert error["code"]
    assert response.headers["x-request-id"]


def test_unknown_endpoint_and_method_use_the_error_shape(daemon) -> None:
    with daemon.client() as client:
        missing = client.get("/v1/nothing-here")
        wrong_method = client.get("/v1/chat/completions")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_daemon_answers_normally_after_the_battery(daemon) -> None:
    for body, _, _ in BAD_BODIES.values():
        with daemon.client() as client:
            assert client.post("/v1/chat/completions", content=body).status_code >= 400
    with daemon.client() as client:
        ok = client.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 5, "temperature": 0})
        health = client.get("/healthz")
    assert ok.status_code == 200, ok.text
    assert ok.json()["choices"][0]["message"]["content"]
    assert health.json() == {"status": "ok"}
    assert daemon.process.poll() is None
