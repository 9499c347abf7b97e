"""POST /v1/completions, OpenAI's legacy completions, on a fake engine: the raw prompt's words come back (the fake
echoes them, one token per word: tests/fake_engine.py), so every reply and token count below is known in advance.
The real model's reply is asked of a real daemon (``slow``)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from inprocess_daemon import InProcessDaemon

from trayllm.api import COMPLETION_DEFAULT_MAX_TOKENS
from trayllm.client import own_daemon_transport

ROUTE = "/v1/completions"
MODEL = "smollm2-135m-instruct"
HELLO = {"model": MODEL, "prompt": "hello there friend"}  # 4 prompt tokens (3 words, the reply's start), 3 back
USAGE = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def chunks(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON of every ``data:`` line before ``[DONE]``, which must be the last."""
    lines = [line for line in response.text.splitlines() if line]
    assert lines[-1] == "data: [DONE]", lines
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def assert_one_completion_record(daemon: InProcessDaemon, responses: list[httpx.Response]) -> list[dict[str, Any]]:
    """Exactly one record per response, each saying the request came in on OpenAI's legacy completions."""
    records = daemon.wait_records(len(responses))
    assert sorted(r["event"]["id"] for r in records) == sorted(x.headers["x-request-id"] for x in responses)
    assert {(r["llm"]["api"], r["gen_ai"]["operation"]["name"]) for r in records} == {("openai", "text_completion")}
    return records


def test_a_completion_is_a_text_completion_with_usage_and_timings_and_one_record(
    fake_engine_daemon: InProcessDaemon,
) -> None:
    with fake_engine_daemon.client() as client:
        response = client.post(ROUTE, json=HELLO)
    assert response.status_code == 200, response.text
    body, request_id = response.json(), response.headers["x-request-id"]
    assert (body["id"], body["object"], body["model"]) == (f"cmpl-{request_id}", "text_completion", MODEL)
    assert body["choices"] == [{"text": "hello there friend", "index": 0, "logprobs": None, "finish_reason": "stop"}]
    assert body["usage"] == USAGE
    assert body["timings"]["request_id"] == request_id and body["timings"]["engine"] == "local"
    (record,) = assert_one_completion_record(fake_engine_daemon, [response])
    assert record["event"]["outcome"] == "success" and record["gen_ai"]["request"]["stream"] is False
    assert record["gen_ai"]["usage"] == {"input_tokens": 4, "output_tokens": 3}


def test_max_tokens_is_openais_16_unless_sent_and_null_leaves_it_to_the_daemon(
    fake_engine_daemon: InProcessDaemon,
) -> None:
    words = " ".join(f"w{i}" for i in range(COMPLETION_DEFAULT_MAX_TOKENS + 4))
    with fake_engine_daemon.client() as client:
        unsent = client.post(ROUTE, json={"prompt": words}).json()
        null = client.post(ROUTE, json={"prompt": words, "max_tokens": None}).json()
        two = client.post(ROUTE, json={"prompt": words, "max_tokens": 2}).json()
    assert (unsent["usage"]["completion_tokens"], unsent["choices"][0]["finish_reason"]) == (16, "length")
    assert (null["choices"][0]["text"], null["choices"][0]["finish_reason"]) == (words, "stop")
    assert (two["choices"][0]["text"], two["choices"][0]["finish_reason"]) == ("w0 w1", "length")


def test_a_list_of_one_prompt_and_a_stop_string(fake_engine_daemon: InProcessDaemon) -> None:
    with fake_engine_daemon.client() as client:
        listed = client.post(ROUTE, json={**HELLO, "prompt": ["hello there friend"]}).json()
        stopped = client.post(ROUTE, json={**HELLO, "stop": "ther"}).json()
    assert listed["choices"][0]["text"] == "hello there friend"
    assert (stopped["choices"][0]["text"], stopped["choices"][0]["finish_reason"]) == ("hello ", "stop")


def test_a_stream_is_text_chunks_a_finish_chunk_usage_if_asked_and_done(fake_engine_daemon: InProcessDaemon) -> None:
    with fake_engine_daemon.client() as client:
        plain = client.post(ROUTE, json={**HELLO, "stream": True})
        with_usage = client.post(ROUTE, json={**HELLO, "stream": True, "stream_options": {"include_usage": True}})
    assert plain.headers["content-type"].startswith("text/event-stream")
    got = chunks(plain)
    assert {(c["id"], c["object"]) for c in got} == {(f"cmpl-{plain.headers['x-request-id']}", "text_completion")}
    assert [c["choices"] for c in got[:-1]] == [
        [{"text": piece, "index": 0, "logprobs": None, "finish_reason": None}]
        for piece in ("hello", " there", " friend")
    ]
    assert got[-1]["choices"] == [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]
    assert got[-1]["timings"]["request_id"] == plain.headers["x-request-id"]
    assert all("usage" not in c for c in got)
    *_, finish, usage = chunks(with_usage)
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert (usage["choices"], usage["usage"]) == ([], USAGE)
    records = assert_one_completion_record(fake_engine_daemon, [plain, with_usage])
    assert all(r["gen_ai"]["request"]["stream"] is True for r in records)


REFUSED: dict[str, tuple[dict[str, Any], str, str]] = {
    "several prompts": ({"prompt": ["a", "b"]}, "prompt", "one prompt per request"),
    "token ids": ({"prompt": [1, 2, 3]}, "prompt", "token-id prompts"),
    "lists of token ids": ({"prompt": [[1, 2]]}, "prompt", "token-id prompts"),
    "no prompt": ({"prompt": None}, "prompt", "string"),
    "empty prompt": ({"prompt": ""}, "prompt", "empty"),
    "echo": ({"echo": True}, "echo", "repeat the prompt"),
    "messages": ({"messages": [{"role": "user", "content": "hi"}]}, "messages", "unknown field"),
    "bad temperature": ({"temperature": 9}, "temperature", "less than or equal to 2"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_body_is_a_400_naming_the_field_and_its_record_names_the_model(
    fake_engine_daemon: InProcessDaemon, case: str
) -> None:
    fields, param, needle = REFUSED[case]
    with fake_engine_daemon.client() as client:
        response = client.post(ROUTE, json={**HELLO, **fields})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["type"]) == (param, "invalid_request_error") and needle in error["message"]
    (record,) = assert_one_completion_record(fake_engine_daemon, [response])
    assert record["event"]["outcome"] == "failure" and record["error"]["type"] == "invalid_request"
    assert record["gen_ai"]["request"]["model"] == MODEL


def test_a_refused_chat_records_the_model_its_body_named(fake_engine_daemon: InProcessDaemon) -> None:
    body = {"model": "some-other-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 9}
    with fake_engine_daemon.client() as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "temperature"
    (record,) = fake_engine_daemon.wait_records(1)
    assert (record["llm"]["api"], record["gen_ai"]["operation"]["name"]) == ("openai", "chat")
    assert record["gen_ai"]["request"]["model"] == "some-other-model"


def sdk_on(daemon: Any) -> openai.OpenAI:
    http = httpx.Client(transport=own_daemon_transport(str(daemon.socket)))
    return openai.OpenAI(base_url="http://trayllm/v1", api_key="unused-on-the-unix-socket", http_client=http)


def test_the_openai_sdk_completes_plain_and_streamed(fake_engine_daemon: InProcessDaemon) -> None:
    sdk = sdk_on(fake_engine_daemon)
    whole = sdk.completions.create(model=MODEL, prompt="hello there friend")
    assert (whole.object, whole.choices[0].text, whole.choices[0].finish_reason) == (
        "text_completion",
        "hello there friend",
        "stop",
    )
    assert whole.usage is not None and whole.usage.total_tokens == USAGE["total_tokens"]
    stream = sdk.completions.create(
        model=MODEL, prompt="hello there friend", stream=True, stream_options={"include_usage": True}
    )
    pieces, usage = [], None
    for chunk in stream:
        pieces += [choice.text for choice in chunk.choices]
        usage = chunk.usage or usage
    assert pieces == ["hello", " there", " friend", ""]
    assert usage is not None and usage.completion_tokens == 3
    records = fake_engine_daemon.wait_records(2)
    assert [(r["gen_ai"]["operation"]["name"], r["gen_ai"]["request"]["stream"]) for r in records] == [
        ("text_completion", False),
        ("text_completion", True),
    ]


@pytest.mark.slow
def test_the_embedded_model_completes_a_raw_prompt(daemon: Any) -> None:
    sdk = sdk_on(daemon)
    reply = sdk.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert "Paris" in reply.choices[0].text
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8
