"""The remote engine's translations: our request into theirs, their stream and errors into ours, their metrics."""

from __future__ import annotations

import json

import pytest

from trayllm.engine.conversation import Prompt
from trayllm.engine.remote_wire import (
    StreamState,
    kv_cache_usage,
    metrics_url,
    read_stream_line,
    request_body,
    request_path,
    upstream_error,
)
from trayllm.engine.types import SamplingParams
from trayllm.errors import EngineFailure, EngineUnreachable, UpstreamRejected

PROMPT = Prompt([], 32, turns_kept=1, turns_dropped=0, messages=({"role": "user", "content": "hi"},))

# as vLLM 0.10 exports them (abridged), and the name the gauge had before
VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 3.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 0.4375
vllm:kv_cache_usage_perc{engine="1",model_name="Qwen/Qwen2.5-7B-Instruct"} 0.5
"""


def test_the_body_streams_the_window_with_usage_and_only_the_sampling_that_applies() -> None:
    plain = request_body("m", PROMPT, SamplingParams(32, 0.0, 1.0, 1.0))
    assert plain == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 32,
        "temperature": 0.0,
        "top_p": 1.0,
    }
    full = request_body(
        "m",
        PROMPT,
        SamplingParams(32, 0.5, 0.9, 1.1, seed=7, stop=("\n",), frequency_penalty=0.5, presence_penalty=-1.5),
    )
    assert (full["repetition_penalty"], full["seed"], full["stop"]) == (1.1, 7, ["\n"])
    assert (full["frequency_penalty"], full["presence_penalty"]) == (0.5, -1.5)


@pytest.mark.parametrize("field", ["frequency_penalty", "presence_penalty"])
def test_an_openai_penalty_is_sent_alone_when_it_is_not_zero(field: str) -> None:
    body = request_body("m", PROMPT, SamplingParams(32, 0.0, 1.0, 1.0, **{field: -0.25}))  # type: ignore[arg-type]
    assert {k: body[k] for k in body.keys() & {"frequency_penalty", "presence_penalty"}} == {field: -0.25}


def test_a_raw_prompt_goes_to_the_legacy_completions_as_its_text() -> None:
    raw = Prompt([], 16, turns_kept=1, turns_dropped=0, text="Once upon a time")
    assert (request_path(raw), request_path(PROMPT)) == ("/completions", "/chat/completions")
    body = request_body("m", raw, SamplingParams(16, 0.0, 1.0, 1.0, stop=("\n",)))
    assert body == {
        "model": "m",
        "prompt": "Once upon a time",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 16,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": ["\n"],
    }


def test_a_legacy_completion_stream_gives_its_text() -> None:
    state = StreamState()

    def chunk(**fields: object) -> str:  # as vLLM and OpenAI send them
        return "data: " + json.dumps({"object": "text_completion", **fields})

    lines = [
        chunk(choices=[{"index": 0, "text": " there", "logprobs": None, "finish_reason": None}]),
        chunk(choices=[{"index": 0, "text": " was", "logprobs": None, "finish_reason": "length"}]),
        chunk(choices=[], usage={"prompt_tokens": 5, "completion_tokens": 2}),
        "data: [DONE]",
    ]
    assert [read_stream_line(line, state) for line in lines] == [" there", " was", None, None]
    assert (state.finish_reason, state.prompt_tokens, state.completion_tokens, state.chunks) == ("length", 5, 2, 2)


def test_a_stream_gives_its_text_finish_reason_and_usage() -> None:
    state = StreamState()
    lines = [
        'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',
        "",
        'data: {"choices":[{"index":0,"delta":{"content":"Hello"}}]}',
        ": keep-alive comment",
        'data: {"choices":[{"index":0,"delta":{"content":" there"},"finish_reason":"length"}]}',
        'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}',
        "data: [DONE]",
    ]
    assert [read_stream_line(line, state) for line in lines] == [None, None, "Hello", None, " there", None, None]
    assert (state.finish_reason, state.prompt_tokens, state.completion_tokens, state.done) == ("length", 9, 2, True)
    assert state.chunks == 2


def test_an_error_in_the_stream_fails_the_request_with_its_message() -> None:
    line = "data: " + json.dumps({"error": {"message": "GPU out of memory", "type": "service_unavailable"}})
    with pytest.raises(EngineFailure, match="GPU out of memory"):
        read_stream_line(line, StreamState())


def test_a_5xx_is_an_unreachable_engine_and_a_4xx_passes_through_in_openai_shape() -> None:
    down = upstream_error(502, b"<html>Bad Gateway</html>")
    assert isinstance(down, EngineUnreachable) and (down.status_code, down.code) == (503, "engine_unreachable")
    assert down.retry_after is not None and down.retry_after > 0
    body = {"error": {"message": "This model's maximum context length is 4096", "type": "BadRequestError", "code": 400}}
    refused = upstream_error(400, json.dumps(body).encode())
    assert isinstance(refused, UpstreamRejected)
    assert (refused.status_code, refused.type, refused.code, refused.message) == (
        400,
        "BadRequestError",
        "400",
        "This model's maximum context length is 4096",
    )
    limited = upstream_error(429, b'{"error": {"message": "slow down"}}', retry_after="7")
    assert (limited.status_code, limited.retry_after, limited.code) == (429, 7.0, "upstream_rejected")


def test_metrics_live_at_the_server_root_and_give_the_highest_kv_cache_usage() -> None:
    assert metrics_url("http://10.0.0.5:8000/v1") == "http://10.0.0.5:8000/metrics"
    assert metrics_url("https://gpu.example/v1/") == "https://gpu.example/metrics"
    assert kv_cache_usage(VLLM_METRICS) == 0.5
    assert kv_cache_usage("vllm:gpu_cache_usage_perc 0.25\n") == 0.25
    assert kv_cache_usage("# trayllm's own\ntrayllm_requests_total 4\n") is None
