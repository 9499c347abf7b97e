"""The client against a real HTTP server on a Unix socket: endpoints, SSE streaming, error mapping."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import httpx
import pytest
from fake_daemon import READY_STATUS, FakeDaemon, fake_daemon_fixture, serve  # noqa: F401
from owners import NOBODY, listening_as_nobody, needs_root

from trayllm import api, api_status, client, config, errors
from trayllm.client import DaemonClient, Done, TextDelta, _sse_messages, error_from_body


def _messages(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture
def daemon_client(fake_daemon: FakeDaemon):
    with DaemonClient(socket_path=fake_daemon.socket_path) as c:
        yield c


def test_public_names_are_pinned():
    assert client.__all__ == [
        "DEFAULT_TIMEOUT",
        "DaemonClient",
        "DaemonEvent",
        "Done",
        "StreamEvent",
        "TextDelta",
        "own_daemon_transport",
    ]


def test_status_models_health(daemon_client: DaemonClient):
    assert daemon_client.health() is True
    assert daemon_client.ready() is True
    status = daemon_client.status()
    assert isinstance(status, api_status.DaemonStatus)
    assert status.model is not None and status.model.name == "fake-model"
    assert status.queue.capacity == 100
    assert [card.id for card in daemon_client.models().data] == ["fake-model"]
    assert daemon_client.last_request_id is not None


def test_ready_is_false_while_loading(fake_daemon: FakeDaemon, daemon_client: DaemonClient):
    fake_daemon.statuses = [{**READY_STATUS, "state": "loading", "model": None}]
    assert daemon_client.health() is True
    assert daemon_client.ready() is False


def test_chat_returns_the_completion_and_request_id(fake_daemon: FakeDaemon, daemon_client: DaemonClient):
    completion = daemon_client.chat({**_messages("hello there"), "stream": True})
    assert completion.choices[0].message.content == "Echo: hello there"
    assert completion.usage.completion_tokens == 3
    assert fake_daemon.bodies[-1]["stream"] is False  # chat() never streams, whatever the request said
    assert daemon_client.last_request_id == completion.id


def test_stream_chat_yields_deltas_then_done(fake_daemon: FakeDaemon, daemon_client: DaemonClient):
    request = api.ChatCompletionRequest.model_validate(_messages("one two three"))
    events = list(daemon_client.stream_chat(request))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Echo: ", "one ", "two ", "three"]
    done = events[-1]
    assert isinstance(done, Done)
    assert done.finish_reason == "stop"
    assert done.usage is not None and done.usage.completion_tokens == 4
    assert done.timings is not None and done.timings.first_token_ms == 312.0
    assert done.request_id == done.timings.request_id == daemon_client.last_request_id
    sent = fake_daemon.bodies[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_stream_delivers_text_before_the_reply_is_finished(fake_daemon: FakeDaemon, daemon_client: DaemonClient):
    events = daemon_client.stream_chat(_messages("GATE open"))
    first = next(events)  # the server is now blocked on the gate: this arrived before the rest existed
    assert first == TextDelta("Echo: ")
    assert fake_daemon.in_flight == 1  # a buffering client would only get here after the server finished
    fake_daemon.gate.set()
    rest = list(events)
    assert isinstance(rest[-1], Done)
    assert "".join(e.text for e in rest if isinstance(e, TextDelta)) == "GATE open"


def test_429_maps_to_rate_limited_with_retry_after(daemon_client: DaemonClient):
    with pytest.raises(errors.RateLimited) as info:
        daemon_client.chat(_messages("RATE me"))
    assert info.value.message == "slow down"
    assert info.value.retry_after == 7.0
    assert info.value.request_id == daemon_client.last_request_id


def test_503_queue_full_maps_to_queue_full_when_streaming(daemon_client: DaemonClient):
    with pytest.raises(errors.QueueFull) as info:
        list(daemon_client.stream_chat(_messages("FULL")))
    assert info.value.status_code == 503
    assert info.value.retry_after == 2.0


def test_400_with_a_specific_code_maps_to_that_class(daemon_client: DaemonClient):
    with pytest.raises(errors.ContextLengthExceeded, match="prompt too long"):
        daemon_client.chat(_messages("LONG"))


def test_error_event_mid_stream_raises_the_typed_error(daemon_client: DaemonClient):
    seen = []
    with pytest.raises(errors.EngineOutOfMemory, match="out of memory") as info:
        for event in daemon_client.stream_chat(_messages("MIDSTREAM")):
            seen.append(event)
    assert seen == [TextDelta("partial")]
    assert info.value.request_id is not None


def test_invalid_request_is_refused_before_sending(fake_daemon: FakeDaemon, daemon_client: DaemonClient):
    with pytest.raises(errors.InvalidRequest, match="tools"):
        daemon_client.chat({**_messages("hi"), "tools": [{"type": "function", "function": {"name": "f"}}]})
    with pytest.raises(errors.InvalidRequest, match="messages"):
        daemon_client.chat({"messages": []})
    assert fake_daemon.bodies == []


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        ({"error": {"message": "m", "type": "service_unavailable", "code": "model_loading"}}, 503, errors.NotReady),
        (
            {"error": {"message": "m", "type": "service_unavailable", "code": "new_code"}},
            503,
            errors.ServiceUnavailable,
        ),
        ({"error": {"message": "m", "type": "server_error", "code": "engine_error"}}, 500, errors.EngineFailure),
        ({"error": {"message": "m", "type": "x", "code": "queue_full"}}, 400, errors.InvalidRequest),
        ({"detail": [{"msg": "field required"}]}, 422, errors.InvalidRequest),
        (
            {"error": {"message": "m", "type": "service_unavailable", "code": "shutting_down"}},
            None,
            errors.ShuttingDown,
        ),
        ({"error": {"message": "m", "type": "?", "code": "?"}}, None, errors.EngineFailure),
        (
            {"error": {"message": "m", "type": "invalid_request_error", "code": "not_found"}},
            404,
            errors.EndpointNotFound,
        ),
        (
            {"error": {"message": "m", "type": "invalid_request_error", "code": "model_not_found"}},
            404,
            errors.ModelNotFound,
        ),
        ({"error": {"message": "m", "type": "x", "code": "method_not_allowed"}}, 405, errors.MethodNotAllowed),
        ({"error": {"message": "m", "type": "x", "code": None}}, 418, errors.InvalidRequest),
    ],
)
def test_error_from_body_picks_by_status_then_code(body, status, expected):
    exc = error_from_body(body, status)
    assert type(exc) is expected
    assert exc.message


def test_sse_parsing_joins_multiline_data_and_skips_comments():
    lines = [": keep-alive", "data: a", "", "data: b1", "data:b2", "", "event: x", "", "data: [DONE]"]
    assert [m.data for m in _sse_messages(iter(lines))] == ["a", "b1\nb2", "[DONE]"]


def test_sse_parsing_keeps_event_names_and_ids_per_message():
    lines = [
        "retry: 2000",
        "",
        "event: hello",
        'data: {"a":1}',
        "",
        "id: b-7",
        "event: alert.firing",
        "data: {}",
        "",
        "data: plain",
        "",
    ]
    got = [(m.event, m.data, m.id) for m in _sse_messages(iter(lines))]
    assert got == [("hello", '{"a":1}', None), ("alert.firing", "{}", "b-7"), ("message", "plain", None)]


def test_missing_socket_is_daemon_not_running(tmp_path: Path):
    path = tmp_path / "nothing.sock"
    with DaemonClient(socket_path=path) as c:
        assert c.health() is False
        with pytest.raises(errors.DaemonNotRunning) as info:
            c.status()
    assert info.value.message == (f"no trayllm daemon on {path}; start one with `trayllm daemon` or `trayllm up`")


def test_stale_socket_is_daemon_not_running():
    path = config.runtime_dir() / "stale.sock"
    path.parent.mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the file stays, nobody listens: connecting is refused
    with DaemonClient(socket_path=path) as c, pytest.raises(errors.DaemonNotRunning, match="no trayllm daemon"):
        list(c.stream_chat(_messages("hi")))


@needs_root
def test_a_daemon_run_by_another_user_is_refused_before_a_byte_is_sent(tmp_path: Path):
    path = tmp_path / "daemon.sock"
    with listening_as_nobody(path) as received, DaemonClient(socket_path=path) as c:
        with pytest.raises(errors.Untrusted) as refused:
            list(c.stream_chat(_messages("my secret")))
        assert received() == b""
    assert refused.value.message == (
        f"the daemon on {path} runs as uid {NOBODY}, not you: trayllm sent it nothing; "
        "choose another place with XDG_RUNTIME_DIR or TRAYLLM_SOCKET"
    )


def test_wait_ready_reports_progress_until_ready(fake_daemon: FakeDaemon, daemon_client: DaemonClient):
    loading = {**READY_STATUS, "state": "loading", "model": None}
    fake_daemon.statuses = [
        {**loading, "load_progress": "1/3"},
        {**loading, "load_progress": "1/3"},
        {**loading, "load_progress": "2/3"},
        {**READY_STATUS, "state": "warming"},
        READY_STATUS,
    ]
    seen = []
    status = daemon_client.wait_ready(5, on_progress=lambda s: seen.append((s.state, s.load_progress)), interval=0.001)
    assert status.state == "ready"
    assert seen == [("loading", "1/3"), ("loading", "2/3"), ("warming", None), ("ready", None)]


def test_wait_ready_raises_the_load_error(fake_daemon: FakeDaemon, daemon_client: DaemonClient):
    fake_daemon.statuses = [{**READY_STATUS, "state": "failed", "model": None, "error": "no such file: x.gguf"}]
    with pytest.raises(errors.ModelLoadError, match="no such file"):
        daemon_client.wait_ready(5, interval=0.001)


def test_wait_ready_stops_when_the_process_dies(tmp_path: Path):
    with DaemonClient(socket_path=tmp_path / "none.sock") as c, pytest.raises(errors.DaemonNotRunning, match="exited"):
        c.wait_ready(30, alive=lambda: False, interval=0.001)


def test_wait_ready_times_out_with_no_daemon(tmp_path: Path):
    with DaemonClient(socket_path=tmp_path / "none.sock") as c, pytest.raises(errors.DaemonNotRunning):
        c.wait_ready(0.05, interval=0.01)


def test_tcp_client_sends_the_token_from_the_token_file(fake_daemon: FakeDaemon, tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    fake_daemon.token = "s3cret"
    with serve(fake_daemon.app(), host="127.0.0.1", port=0) as server:
        port = server.servers[0].sockets[0].getsockname()[1]
        settings = config.load_settings({"listen": f"127.0.0.1:{port}", "token_file": str(token_file)})
        with DaemonClient.from_settings(settings, tcp=True) as c:
            assert c.chat(_messages("over tcp")).choices[0].message.content == "Echo: over tcp"
        token_file.write_text("wrong")
        with DaemonClient.from_settings(settings, tcp=True) as c, pytest.raises(errors.Unauthorized):
            c.chat(_messages("over tcp"))
    assert fake_daemon.auth_headers == ["Bearer s3cret", "Bearer wrong"]


def test_tcp_needs_listen_and_a_token(tmp_path: Path):
    with pytest.raises(errors.ConfigError, match="listen"):
        DaemonClient.from_settings(config.load_settings(), tcp=True)
    settings = config.load_settings({"listen": "127.0.0.1:9", "token_file": str(tmp_path / "missing")})
    with pytest.raises(errors.ConfigError, match="token file"):
        DaemonClient.from_settings(settings, tcp=True)


def test_clients_in_threads_each_get_their_reply(fake_daemon: FakeDaemon):
    replies: dict[int, str] = {}

    def worker(i: int) -> None:
        with DaemonClient(socket_path=fake_daemon.socket_path) as c:
            replies[i] = "".join(e.text for e in c.stream_chat(_messages(f"n{i}")) if isinstance(e, TextDelta))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert replies == {i: f"Echo: n{i}" for i in range(4)}


def test_openai_sdk_over_the_socket(fake_daemon: FakeDaemon):
    """The README's recipe: the official SDK with an httpx transport on the Unix socket."""
    openai = pytest.importorskip("openai")
    http = httpx.Client(transport=httpx.HTTPTransport(uds=str(fake_daemon.socket_path)))
    sdk = openai.OpenAI(base_url="http://trayllm/v1", api_key="unused", http_client=http)
    try:
        model = sdk.models.list().data[0].id
        assert model == "fake-model"
        reply = sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "sdk"}])
        assert reply.choices[0].message.content == "Echo: sdk"
        stream = sdk.chat.completions.create(
            model="fake-model", stream=True, messages=[{"role": "user", "content": "sdk stream"}]
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Echo: sdk stream"
    finally:
        sdk.close()
