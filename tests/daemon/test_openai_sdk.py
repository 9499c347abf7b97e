"""The official openai SDK against the daemon, over the Unix socket.

Replies that need the model to know something are asked of the real daemon (``slow``); the SDK's reading of
the daemon's model list, headers and errors is checked on a fake engine served in this process.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from trayllm.client import own_daemon_transport


def sdk_on(socket: Path) -> openai.OpenAI:
    http = httpx.Client(transport=own_daemon_transport(str(socket)))  # as the README shows
    return openai.OpenAI(base_url="http://trayllm/v1", api_key="unused-on-the-unix-socket", http_client=http)


@pytest.fixture
def sdk(daemon) -> openai.OpenAI:
    """The SDK on the real daemon and model."""
    return sdk_on(daemon.socket)


@pytest.fixture
def fake_sdk(fake_engine_daemon) -> openai.OpenAI:
    """The SDK on the daemon's app in front of a fake engine."""
    return sdk_on(fake_engine_daemon.socket)


def test_models_lists_the_embedded_model(fake_sdk: openai.OpenAI) -> None:
    models = fake_sdk.models.list()
    assert [m.id for m in models.data] == ["smollm2-135m-instruct"]


def test_models_retrieve_finds_the_served_model_and_404s_another(fake_sdk: openai.OpenAI) -> None:
    model = fake_sdk.models.retrieve("smollm2-135m-instruct")
    assert (model.id, model.object, model.owned_by) == ("smollm2-135m-instruct", "model", "trayllm")
    with pytest.raises(openai.NotFoundError) as caught:
        fake_sdk.models.retrieve("Qwen/Qwen2.5-7B-Instruct")  # a hub id, slash and all, is looked up too
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found" and body["param"] == "model"
    assert "'Qwen/Qwen2.5-7B-Instruct' is not served here" in body["message"]


@pytest.mark.slow
def test_non_streamed_reply_knows_paris(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(
        model="smollm2-135m-instruct",
        temperature=0,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert "Paris" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


@pytest.mark.slow
def test_streamed_reply_arrives_in_pieces_with_usage(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="smollm2-135m-instruct",
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert len(pieces) > 3, "the reply should stream token by token"
    assert "Paris" in "".join(pieces)
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens >= len(pieces)


def test_sdk_sees_request_id_header(fake_sdk: openai.OpenAI) -> None:
    raw = fake_sdk.chat.completions.with_raw_response.create(
        model="smollm2-135m-instruct",
        max_tokens=2,
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={"x-request-id": "client-chosen-id-42"},
    )
    assert raw.headers["x-request-id"] == "client-chosen-id-42"
    assert raw.parse().id == "chatcmpl-client-chosen-id-42"


def test_unknown_model_is_a_404_the_sdk_understands(fake_sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        fake_sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert "smollm2-135m-instruct" in str(caught.value)
