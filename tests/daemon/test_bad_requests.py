"""Bad input gets a 4xx with an OpenAI error body, and the daemon keeps serving.

The error bodies are the HTTP layer's: they are checked on a fake engine in this process. That the real
daemon process survives them, and the sampler's extreme values, are checked on the real model (``slow``).
"""

from __future__ import annotations

import json
from contextlib import ExitStack

import pytest
from waiting import wait_for

from trayllm.slo.objectives import CLIENT_FAULT
from trayllm.telemetry.reader import iter_records

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
    "seed beyond int64": (json.dumps({"messages": MESSAGES, "seed": 2**63}).encode(), 400, "seed"),
    "top_p of zero": (json.dumps({"messages": MESSAGES, "top_p": 0}).encode(), 400, "top_p"),
    "unknown model": (json.dumps({"model": "llama-70b", "messages": MESSAGES}).encode(), 404, "llama-70b"),
    "unsupported field": (
        json.dumps({"messages": MESSAGES, "tools": [{"type": "function", "function": {"name": "f"}}]}).encode(),
        400,
        "tools",
    ),
    "unknown field": (json.dumps({"messages": MESSAGES, "flavour": "mint"}).encode(), 400, "flavour"),
    "n above 1": (json.dumps({"messages": MESSAGES, "n": 3}).encode(), 400, "n"),
    "too many stops": (json.dumps({"messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}).encode(), 400, "stop"),
    "system after user": (
        json.dumps({"messages": MESSAGES + [{"role": "system", "content": "x"}]}).encode(),
        400,
        "system",
    ),
    "unpaired surrogate": (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', 400, "surrogate"),
    "NaN temperature": (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', 400, "NaN"),
    "prompt longer than the context": (
        json.dumps({"messages": [{"role": "user", "content": "word " * 40000}]}).encode(),
        400,
        "context",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_request_gets_openai_error(fake_engine_daemon, case: str) -> None:
    body, status, needle = BAD_BODIES[case]
    with fake_engine_daemon.client() as client:
        response = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle.lower() in error["message"].lower()
    assert error["type"] == "invalid_request_error"
    assert error["code"]
    assert response.headers["x-request-id"]


def test_unknown_endpoint_and_method_use_the_error_shape(fake_engine_daemon) -> None:
    with fake_engine_daemon.client() as client:
        missing = client.get("/v1/nothing-here")
        wrong_method = client.get("/v1/chat/completions")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.slow
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
