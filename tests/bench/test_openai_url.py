"""The bench's transport to any OpenAI-compatible URL, against a real HTTP server on loopback (openai_standin)."""

from __future__ import annotations

import socket

import pytest
from openai_standin import serve_standin

from trayllm import errors
from trayllm.bench import load, openai_url
from trayllm.client import Done, TextDelta

STANDARD_FIELDS = {"model", "messages", "max_tokens", "temperature", "stream", "stream_options"}


def test_a_level_counts_tokens_from_usage_and_sends_only_standard_fields():
    with serve_standin() as peer:
        level = load.run_level(
            lambda: openai_url.OpenAIServer(peer.url, api_key="sk-test"),
            concurrency=2,
            requests=4,
            max_tokens=3,
            model="peer-model",
        )
    assert (level.requests, level.errors) == (4, 0)
    assert level.completion_tokens == 4 * (3 + peer.usage_bonus)  # usage wins over counting chunks
    assert level.first_token_p50_ms is not None and level.decode_tokens_per_second_per_stream is not None
    for body in peer.bodies:
        assert set(body) == STANDARD_FIELDS
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        assert (body["model"], body["max_tokens"], body["temperature"]) == ("peer-model", 3, 0)
    assert {headers["authorization"] for path, headers, _ in peer.requests} == {"Bearer sk-test"}


def test_without_usage_chunks_tokens_are_counted_from_content_chunks():
    with serve_standin(with_usage=False) as peer, openai_url.OpenAIServer(peer.url) as server:
        result = load.run_one(server, "one two three four five six", max_tokens=4)
    assert result.error is None
    assert result.completion_tokens == 4  # "Echo:", "one", "two", "three"
    assert "authorization" not in peer.requests[0][1]
    assert "model" not in peer.bodies[0]  # none given: the server's default


def test_the_stream_yields_text_then_done_with_usage():
    with serve_standin() as peer, openai_url.OpenAIServer(peer.url) as server:
        events = list(server.stream_chat({"messages": [{"role": "user", "content": "hi there"}], "max_tokens": 9}))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Echo:", " hi", " there"]
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "length"
    assert done.usage is not None and done.usage.completion_tokens == 3 + peer.usage_bonus


def test_a_finished_reply_without_done_is_whole_but_a_cut_one_is_an_error():
    request = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    with serve_standin(send_done=False) as peer, openai_url.OpenAIServer(peer.url) as server:
        assert isinstance(list(server.stream_chat(request))[-1], Done)
    with (
        serve_standin(send_done=False, finish=False) as peer,
        openai_url.OpenAIServer(peer.url) as server,
        pytest.raises(errors.EngineFailure, match="without \\[DONE\\]"),
    ):
        list(server.stream_chat(request))


def test_an_error_answer_is_recorded_per_request():
    with serve_standin(status=503) as peer:
        level = load.run_level(lambda: openai_url.OpenAIServer(peer.url), concurrency=1, requests=2, max_tokens=4)
    assert (level.requests, level.errors, level.completion_tokens) == (2, 2, 0)
    assert level.error_examples == ("ServiceUnavailable: engine busy",)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_nothing_listening_is_service_unavailable_and_waiting_gives_up():
    with openai_url.OpenAIServer(f"http://127.0.0.1:{_free_port()}/v1") as server:
        result = load.run_one(server, "hi", max_tokens=4)
        assert result.error is not None and result.error.startswith("ServiceUnavailable: nothing answers at")
        with pytest.raises(errors.ServiceUnavailable):
            openai_url.wait_until_serving(server, None, timeout=0)


def test_the_model_defaults_to_the_first_listed():
    with serve_standin() as peer, openai_url.OpenAIServer(peer.url) as server:
        assert openai_url.wait_until_serving(server, None, timeout=1) == "peer-model"
        assert openai_url.wait_until_serving(server, "other-model", timeout=1) == "other-model"
    with serve_standin(models=None) as peer, openai_url.OpenAIServer(peer.url) as server:  # no /models route
        assert openai_url.wait_until_serving(server, None, timeout=1) is None
        assert openai_url.wait_until_serving(server, "given", timeout=1) == "given"


def test_the_api_key_file_is_read_stripped(tmp_path):
    key = tmp_path / "key"
    key.write_text("sk-abc\n")
    assert openai_url.read_api_key(key) == "sk-abc"
    with pytest.raises(errors.ConfigError, match="cannot read the API key file"):
        openai_url.read_api_key(tmp_path / "missing")
