"""POST /v1/chat/completions on a fake engine: what the handler makes of the engine's events and refusals.

The fake echoes the last message one word per token (tests/fake_engine.py), so every reply, token count and
stop below is known in advance; the real model's replies are tested in the ``slow`` suites.
"""

from __future__ import annotations

import json

import httpx
import pytest
from inprocess_daemon import InProcessDaemon
from waiting import wait_for

from trayllm.errors import EngineOutOfMemory, QueueFull
from trayllm.telemetry.reader import iter_records

ROUTE = "/v1/chat/completions"
HELLO = {"messages": [{"role": "user", "content": "hello there friend"}]}  # 5 prompt tokens, 3 in the reply


def chunks(response: httpx.Response) -> list[dict]:
    """The JSON of every ``data:`` line before ``[DONE]``, which must be the last."""
    lines = [line for line in response.text.splitlines() if line]
    assert lines[-1] == "data: [DONE]", lines
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def record_of(daemon: InProcessDaemon, request_id: str) -> dict:
    [record] = wait_for(lambda: [r for r in iter_records(daemon.records) if r["event"]["id"] == request_id])
    return record


def test_a_reply_carries_the_engines_text_usage_and_timings_and_leaves_its_record(
    fake_engine_daemon: InProcessDaemon,
) -> None:
    with fake_engine_daemon.client() as client:
        response = client.post(ROUTE, json=HELLO)
    assert response.status_code == 200, response.text
    body, request_id = response.json(), response.headers["x-request-id"]
    assert body["id"] == f"chatcmpl-{request_id}" and body["model"] == "smollm2-135m-instruct"
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "hello there friend"}, "finish_reason": "stop"}
    ]
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert body["timings"]["request_id"] == request_id and body["timings"]["max_tokens_capped"] is False
    assert 0 <= body["timings"]["first_token_ms"] <= body["timings"]["total_ms"]
    record = record_of(fake_engine_daemon, request_id)
    assert record["event"]["outcome"] == "success" and record["http"]["response"]["status_code"] == 200
    assert record["gen_ai"]["usage"] == {"input_tokens": 5, "output_tokens": 3}


def test_max_tokens_ends_the_reply_with_length(fake_engine_daemon: InProcessDaemon) -> None:
    with fake_engine_daemon.client() as client:
        body = client.post(ROUTE, json={**HELLO, "max_tokens": 2}).json()
    assert body["choices"][0]["message"]["content"] == "hello there"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


def test_a_stop_string_cuts_the_reply_and_never_shows_in_a_chunk(fake_engine_daemon: InProcessDaemon) -> None:
    fake_engine_daemon.engine.script = "one two three four"
    request = {**HELLO, "stop": ["thr"]}
    with fake_engine_daemon.client() as client:
        whole = client.post(ROUTE, json=request).json()
        streamed = chunks(client.post(ROUTE, json={**request, "stream": True}))
    assert whole["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": "one two "},
        "finish_reason": "stop",
    }
    pieces = [c["choices"][0]["delta"].get("content", "") for c in streamed]
    assert "".join(pieces) == "one two " and not any("th" in piece for piece in pieces)
    assert streamed[-1]["choices"][0]["finish_reason"] == "stop"


def test_a_stream_is_a_role_chunk_content_chunks_a_finish_chunk_usage_if_asked_and_done(
    fake_engine_daemon: InProcessDaemon,
) -> None:
    with fake_engine_daemon.client() as client:
        plain = client.post(ROUTE, json={**HELLO, "stream": True})
        with_usage = client.post(ROUTE, json={**HELLO, "stream": True, "stream_options": {"include_usage": True}})
    assert plain.headers["content-type"].startswith("text/event-stream")
    assert plain.headers["cache-control"] == "no-cache" and plain.headers["x-accel-buffering"] == "no"
    got = chunks(plain)
    assert {c["id"] for c in got} == {f"chatcmpl-{plain.headers['x-request-id']}"}
    assert got[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in got[1:-1]] == ["hello", " there", " friend"]
    assert got[-1]["choices"][0]["finish_reason"] == "stop" and got[-1]["timings"]["request_id"]
    assert all("usage" not in c for c in got)
    *_, finish, usage = chunks(with_usage)
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_an_engine_failure_is_an_error_status_or_an_error_event_and_a_failure_record(
    fake_engine_daemon: InProcessDaemon,
) -> None:
    engine = fake_engine_daemon.engine
    engine.fail, engine.fail_after_tokens = EngineOutOfMemory("GPU out of memory"), 1
    with fake_engine_daemon.client() as client:
        whole = client.post(ROUTE, json=HELLO)
        streamed = client.post(ROUTE, json={**HELLO, "stream": True})
    assert whole.status_code == 503 and whole.json()["error"]["code"] == "oom", whole.text
    assert streamed.status_code == 200  # the headers went out before the failure
    role, content, error = chunks(streamed)
    assert content["choices"][0]["delta"]["content"] == "hello"
    assert error["error"]["code"] == "oom" and error["error"]["message"] == "GPU out of memory"
    for response in (whole, streamed):
        record = record_of(fake_engine_daemon, response.headers["x-request-id"])
        assert record["event"]["outcome"] == "failure" and record["error"]["type"] == "oom"
        assert record["http"]["response"]["status_code"] == 503


def test_an_engine_refusal_is_its_status_with_retry_after_and_one_record(fake_engine_daemon: InProcessDaemon) -> None:
    fake_engine_daemon.engine.refuse = QueueFull("the queue is full", retry_after=2.5)
    with fake_engine_daemon.client() as client:
        refused = client.post(ROUTE, json=HELLO)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "queue_full"
    assert refused.headers["retry-after"] == "3"
    record = record_of(fake_engine_daemon, refused.headers["x-request-id"])
    assert record["error"]["type"] == "queue_full" and record["http"]["response"]["status_code"] == 503
    assert fake_engine_daemon.status()["requests"]["rejected"] == 1


@pytest.mark.parametrize("log_content", [False, True])
def test_content_is_recorded_only_when_the_user_opts_in(start_fake_engine_daemon, log_content: bool) -> None:
    daemon = start_fake_engine_daemon(log_content=log_content)
    with daemon.client() as client:
        response = client.post(ROUTE, json=HELLO)
    record = record_of(daemon, response.headers["x-request-id"])
    assert ("hello there" in json.dumps(record)) is log_content, record
    if log_content:
        assert record["gen_ai"]["input"]["messages"] == HELLO["messages"]
        assert record["gen_ai"]["output"]["text"] == "hello there friend"
