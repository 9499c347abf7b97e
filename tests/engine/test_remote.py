"""The remote engine against a real upstream: a second trayllm daemon (the daemon's app on a fake engine) on
loopback TCP with its bearer token, its /metrics replaced by a recorded vLLM one. The downstream daemon serves
through it, and the openai SDK talks to the downstream one over its Unix socket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fake_engine import FakeEngine
from inprocess_daemon import InProcessDaemon, free_port, serve_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from waiting import wait_for

from trayllm.client import own_daemon_transport
from trayllm.engine.remote import RemoteEngine

KV_USAGE = 0.4375
VLLM_METRICS = f"""\
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="smollm2-135m-instruct"}} {KV_USAGE}
"""


def with_vllm_metrics(app: Any) -> Starlette:
    """The upstream's app behind a /metrics shaped like vLLM's (at the server root, as vLLM serves it)."""

    async def metrics(_: Request) -> PlainTextResponse:
        return PlainTextResponse(VLLM_METRICS)

    return Starlette(routes=[Route("/metrics", metrics), Mount("/", app=app)])


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[InProcessDaemon]:
    with serve_engine(
        FakeEngine,
        tcp=True,
        app_wrapper=with_vllm_metrics,
        listen=f"127.0.0.1:{free_port()}",
        state_dir=str(tmp_path / "upstream"),
        token_file=str(tmp_path / "upstream-token"),
    ) as daemon:
        yield daemon


@pytest.fixture
def start_downstream(tmp_path: Path) -> Iterator[Callable[..., InProcessDaemon]]:
    import contextlib

    with contextlib.ExitStack() as stack:

        def start(**settings: Any) -> InProcessDaemon:
            daemon = stack.enter_context(serve_engine(RemoteEngine, state_dir=str(tmp_path / "downstream"), **settings))
            wait_for(lambda: daemon.engine.state == "ready")
            return daemon

        yield start


def through(upstream: InProcessDaemon, start: Callable[..., InProcessDaemon], **settings: Any) -> InProcessDaemon:
    return start(
        engine_url=f"http://{upstream.settings.listen}/v1",
        engine_api_key_file=str(upstream.settings.token_path),
        **settings,
    )


def sdk_on(daemon: InProcessDaemon) -> openai.OpenAI:
    http = httpx.Client(transport=own_daemon_transport(str(daemon.socket)))
    return openai.OpenAI(base_url="http://trayllm/v1", api_key="unused", http_client=http)


def test_the_openai_sdk_streams_through_the_upstream_and_one_record_names_it(
    upstream: InProcessDaemon, start_downstream: Callable[..., InProcessDaemon]
) -> None:
    down = through(upstream, start_downstream)
    assert [m.id for m in sdk_on(down).models.list().data] == ["smollm2-135m-instruct"]
    stream = sdk_on(down).chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "four words come back"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=16,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "four words come back"  # the fake upstream echoes the last message
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    (upstream_record,) = upstream.wait_records(1)
    (record,) = down.wait_records(1)
    assert record["event"]["outcome"] == "success"
    assert record["gen_ai"]["response"]["model"] == "smollm2-135m-instruct"
    assert record["llm"]["model"]["version"] == "smollm2-135m-instruct"  # the upstream's model id
    assert record["llm"]["engine"] == {"name": "remote", "url": f"http://{upstream.settings.listen}/v1"}
    assert record["gen_ai"]["usage"] == upstream_record["gen_ai"]["usage"]  # the upstream's own count
    assert record["llm"]["ttft"]["ns"] > 0 and record["llm"]["queue"]["ns"] >= 0
    assert record["llm"]["vram"]["peak"]["pct"] == KV_USAGE  # from the upstream's vLLM-shaped /metrics


def test_a_legacy_completion_is_forwarded_to_the_upstreams_completions(
    upstream: InProcessDaemon, start_downstream: Callable[..., InProcessDaemon]
) -> None:
    down = through(upstream, start_downstream)
    stream = sdk_on(down).completions.create(
        model="smollm2-135m-instruct", prompt="no chat template here", stream=True, max_tokens=16
    )
    assert "".join(choice.text for chunk in stream for choice in chunk.choices) == "no chat template here"
    (upstream_record,) = upstream.wait_records(1)
    (record,) = down.wait_records(1)
    assert upstream_record["gen_ai"]["operation"]["name"] == "text_completion"  # the upstream's /completions
    assert upstream_record["gen_ai"]["usage"] == {"input_tokens": 5, "output_tokens": 4}  # no role tokens: raw
    assert record["gen_ai"]["operation"]["name"] == "text_completion" and record["event"]["outcome"] == "success"
    assert record["gen_ai"]["usage"] == upstream_record["gen_ai"]["usage"]


def test_a_client_that_leaves_closes_the_upstream_stream(
    upstream: InProcessDaemon, start_downstream: Callable[..., InProcessDaemon]
) -> None:
    upstream.engine.token_delay_s = 0.05
    upstream.engine.script = " ".join(["word"] * 400)
    down = through(upstream, start_downstream)
    stream = sdk_on(down).chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": "talk"}], stream=True, max_tokens=400
    )
    for index, _ in enumerate(stream):
        if index == 3:
            break
    stream.close()
    wait_for(lambda: upstream.engine.counters.cancelled == 1)  # the upstream saw its client go
    (record,) = down.wait_records(1)
    assert record["error"]["type"] == "cancelled"
    (upstream_record,) = upstream.wait_records(1)
    assert upstream_record["error"]["type"] == "cancelled" and upstream_record["gen_ai"]["usage"]["output_tokens"] < 400


def test_an_upstream_refusal_reaches_the_client_with_its_status_and_code(
    upstream: InProcessDaemon, start_downstream: Callable[..., InProcessDaemon]
) -> None:
    down = through(upstream, start_downstream)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk_on(down).chat.completions.create(
            model="smollm2-135m-instruct", messages=[{"role": "user", "content": "hi"}], max_tokens=9000
        )
    assert refused.value.status_code == 400 and refused.value.code == "context_length_exceeded"
    (record,) = down.wait_records(1)
    assert record["error"]["type"] == "upstream_rejected" and record["http"]["response"]["status_code"] == 400


def test_an_upstream_that_is_down_is_a_503_with_retry_after_and_its_own_alert(
    start_downstream: Callable[..., InProcessDaemon],
) -> None:
    down = start_downstream(engine_url=f"http://127.0.0.1:{free_port()}/v1", engine_model="served-elsewhere")
    with down.client() as client:
        response = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        )
        assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] == "engine_unreachable"
        alerts: Any = wait_for(lambda: client.get("/v1/status").json()["alerts"])
    assert [(a["key"], a["severity"]) for a in alerts] == [("engine.unreachable.remote", "critical")]
    (record,) = down.wait_records(1)
    assert record["error"]["type"] == "engine_unreachable" and record["llm"]["model"]["version"] == "served-elsewhere"
