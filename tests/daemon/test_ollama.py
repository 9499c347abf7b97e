"""Ollama's API on the daemon (daemon/ollama.py, daemon/ollama_info.py), driven by the real ``ollama`` library
over TCP with the token and over the Unix socket, and by hand where the wire itself is the point.

The daemon is its real app on a FakeEngine (tests/inprocess_daemon.py), which echoes the last message one word
per token; every request id the client saw is matched to exactly one record.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from fake_engine import FAKE_INFO, FakeEngine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inprocess_daemon import InProcessDaemon, free_port, serve_engine
from waiting import wait_for

from trayllm.errors import EngineOutOfMemory
from trayllm.model_catalog import embedded_gguf
from trayllm.ollama_api import IGNORED_HEADER, OLLAMA_VERSION
from trayllm.ollama_rules import REFUSED_ROUTES, RULES
from trayllm.telemetry.reader import iter_records

MODEL = FAKE_INFO.name
HELLO = [{"role": "user", "content": "hello there friend"}]  # the fake's reply: "hello there friend"


class Seen:
    """The x-request-id of every response a client got (an httpx response hook, so streamed ones too)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def hook(self, response: httpx.Response) -> None:
        self.ids.append(response.headers["x-request-id"])

    def client(self, host: str, **httpx_options: Any) -> ollama.Client:
        return ollama.Client(host=host, timeout=30, event_hooks={"response": [self.hook]}, **httpx_options)


def records(daemon: InProcessDaemon) -> list[dict[str, Any]]:
    return list(iter_records(daemon.records)) if daemon.records.exists() else []


def record_of(daemon: InProcessDaemon, request_id: str) -> dict[str, Any]:
    """The one record of ``request_id``, once written."""
    found = wait_for(lambda: [r for r in records(daemon) if r["event"]["id"] == request_id])
    assert isinstance(found, list) and len(found) == 1, found
    return found[0]


@pytest.fixture(autouse=True)
def no_ollama_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library reads its host and key from the environment when not given them."""
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)


@pytest.fixture
def tcp_daemon() -> Iterator[InProcessDaemon]:
    with serve_engine(FakeEngine, tcp=True, listen=f"127.0.0.1:{free_port()}") as daemon:
        yield daemon


def tcp_url(daemon: InProcessDaemon) -> str:
    return f"http://{daemon.settings.listen}"


def unix_client(daemon: InProcessDaemon, seen: Seen) -> ollama.Client:
    return seen.client("http://trayllm", transport=httpx.HTTPTransport(uds=str(daemon.socket)))


def test_the_library_lists_shows_chats_and_generates_over_tcp_with_the_token(tcp_daemon: InProcessDaemon) -> None:
    seen = Seen()
    client = seen.client(tcp_url(tcp_daemon), headers={"Authorization": f"Bearer {tcp_daemon.token}"})
    [listed] = client.list().models
    assert listed.model == f"{MODEL}:latest" and listed.details is not None
    shown = client.show(listed.model or "")
    assert shown.capabilities == ["completion"] and shown.details is not None
    information = seen.ids[:]  # list and show generate nothing, so they leave no record

    reply = client.chat(model=MODEL, messages=HELLO, stream=False)
    assert (reply.message.role, reply.message.content, reply.done, reply.done_reason) == (
        "assistant",
        "hello there friend",
        True,
        "stop",
    )
    assert (reply.prompt_eval_count, reply.eval_count) == (5, 3)
    pieces = list(client.chat(model=listed.model or "", messages=HELLO, stream=True))
    assert [p.message.content for p in pieces] == ["hello", " there", " friend", ""]
    assert pieces[-1].done and pieces[-1].done_reason == "stop" and pieces[-1].model == f"{MODEL}:latest"
    assert client.generate(model=MODEL, prompt="why is the sky blue", stream=False).response == "why is the sky blue"
    parts = list(client.generate(model=MODEL, prompt="because of scattering", stream=True))
    assert "".join(p.response or "" for p in parts) == "because of scattering" and parts[-1].done

    generations = seen.ids[len(information) :]
    assert len(generations) == 4
    for request_id, stream in zip(generations, (False, True, False, True), strict=True):
        record = record_of(tcp_daemon, request_id)
        assert record["llm"]["api"] == "ollama" and record["event"]["outcome"] == "success"
        assert record["gen_ai"]["operation"]["name"] == "chat" and record["gen_ai"]["request"]["stream"] is stream
        assert record["gen_ai"]["request"]["model"] == MODEL  # ":latest" is the client's spelling of the same
    assert len(records(tcp_daemon)) == 4


def test_the_library_works_over_the_unix_socket(fake_engine_daemon: InProcessDaemon) -> None:
    seen = Seen()
    client = unix_client(fake_engine_daemon, seen)
    assert [m.model for m in client.list().models] == [f"{MODEL}:latest"]
    assert client.chat(model=MODEL, messages=HELLO).message.content == "hello there friend"
    parts = list(client.generate(model=MODEL, prompt="a raw prompt", raw=True, stream=True))
    assert "".join(p.response or "" for p in parts) == "a raw prompt"
    chat, raw = (record_of(fake_engine_daemon, request_id) for request_id in seen.ids[1:])
    assert chat["llm"]["api"] == raw["llm"]["api"] == "ollama"
    assert chat["gen_ai"]["operation"]["name"] == "chat"
    assert raw["gen_ai"]["operation"]["name"] == "text_completion"


def test_a_stream_is_ndjson_whose_last_line_adds_up_its_durations(fake_engine_daemon: InProcessDaemon) -> None:
    with fake_engine_daemon.client() as client:
        response = client.post("/api/generate", json={"model": MODEL, "prompt": "one two three"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["response"] for line in lines] == ["one", " two", " three", ""]
    assert all(line["model"] == MODEL and line["created_at"].endswith("Z") for line in lines)
    assert [line["done"] for line in lines] == [False, False, False, True] and "done_reason" not in lines[0]
    last = lines[-1]
    assert (last["done_reason"], last["prompt_eval_count"], last["eval_count"]) == ("stop", 5, 3)
    parts = last["load_duration"] + last["prompt_eval_duration"] + last["eval_duration"]
    assert abs(last["total_duration"] - parts) <= 3  # one span cut in three, each rounded to the nanosecond
    assert last["eval_duration"] > 0


def test_options_are_mapped_and_ignored_ones_are_named_in_a_header_the_log_and_the_record(
    fake_engine_daemon: InProcessDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    fake_engine_daemon.engine.script = "one two three four five"
    options = {"num_predict": 2, "temperature": 0.5, "seed": 3, "top_k": 40, "num_ctx": 2048}
    body = {"model": MODEL, "messages": HELLO, "stream": False, "options": options, "keep_alive": "10m"}
    with caplog.at_level("INFO", logger="trayllm.daemon.ollama"), fake_engine_daemon.client() as client:
        response = client.post("/api/chat", json=body)
        cut_response = client.post("/api/chat", json={**body, "keep_alive": None, "options": {"stop": ["thr"]}})
    cut, cut_id = cut_response.json(), cut_response.headers["x-request-id"]
    reply = response.json()
    assert (reply["message"]["content"], reply["done_reason"], reply["eval_count"]) == ("one two", "length", 2)
    assert cut["message"]["content"] == "one two " and cut["done_reason"] == "stop"
    assert response.headers[IGNORED_HEADER] == "keep_alive, options.top_k, options.num_ctx"
    assert any("keep_alive, options.top_k, options.num_ctx" in r.getMessage() for r in caplog.records)
    record = record_of(fake_engine_daemon, response.headers["x-request-id"])
    request = record["gen_ai"]["request"]
    assert (request["max_tokens"], request["temperature"], request["seed"]) == (2, 0.5, 3)
    assert record["llm"]["request"]["ignored"] == ["keep_alive", "options.top_k", "options.num_ctx"]
    assert "request" not in record_of(fake_engine_daemon, cut_id)["llm"]  # nothing ignored: no field


def test_a_system_prompt_goes_before_the_prompt(fake_engine_daemon: InProcessDaemon) -> None:
    with fake_engine_daemon.client() as client:
        plain = client.post("/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False}).json()
        system = {"model": MODEL, "prompt": "hi", "system": "be very brief", "stream": False}
        with_system = client.post("/api/generate", json=system).json()
    assert plain["response"] == with_system["response"] == "hi"
    assert with_system["prompt_eval_count"] == plain["prompt_eval_count"] + 4  # its role and three words


def test_a_load_request_is_answered_at_once_and_leaves_no_record(fake_engine_daemon: InProcessDaemon) -> None:
    with fake_engine_daemon.client() as client:
        chat = client.post("/api/chat", json={"model": MODEL, "messages": []})
        generate = client.post("/api/generate", json={"model": f"{MODEL}:latest", "keep_alive": 0})
        unknown = client.post("/api/generate", json={"model": "llama3.2"})
        after = client.post("/api/generate", json={"model": MODEL, "prompt": "x", "stream": False})
    assert chat.json()["message"] == {"role": "assistant", "content": ""} and chat.json()["done_reason"] == "load"
    assert generate.json()["response"] == "" and generate.json()["model"] == f"{MODEL}:latest"
    assert generate.json()["done"] is True and generate.json()["done_reason"] == "load"
    assert unknown.status_code == 404 and "trayllm pull" in unknown.json()["error"]
    record_of(fake_engine_daemon, after.headers["x-request-id"])
    assert len(records(fake_engine_daemon)) == 1


BAD_BODIES: list[tuple[str, bytes | dict[str, Any]]] = [
    ("/api/chat", b"{not json"),
    ("/api/chat", b"[1, 2]"),
    ("/api/chat", b""),
    ("/api/chat", b"[" * 5000 + b"]" * 5000),
    ("/api/chat", {"messages": HELLO}),
    ("/api/chat", {"model": 42, "messages": HELLO}),
    ("/api/chat", {"model": MODEL, "messages": "hello"}),
    ("/api/chat", {"model": MODEL, "messages": [{"content": "no role"}]}),
    ("/api/chat", {"model": MODEL, "messages": HELLO, "options": []}),
    ("/api/chat", {"model": MODEL, "messages": HELLO, "options": {"temperature": -1}}),
    ("/api/chat", {"model": MODEL, "messages": HELLO, "tools": [{"type": "function"}]}),
    ("/api/chat", {"model": MODEL, "messages": HELLO, "format": "json"}),
    ("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}),
    ("/api/chat", {"model": "no-such-model", "messages": HELLO}),
    ("/api/chat", {"model": MODEL, "messages": HELLO, "options": {"num_predict": 10**6}}),
    ("/api/generate", {"model": MODEL, "prompt": 7}),
    ("/api/generate", {"model": MODEL, "prompt": "x", "raw": True, "system": "s"}),
    ("/api/generate", {"model": MODEL, "prompt": "x", "context": [1, 2]}),
    ("/api/generate", {"model": MODEL, "prompt": "x", "think": True}),
    ("/api/generate", {"model": MODEL, "prompt": "x", "images": ["aGk="]}),
    ("/api/show", b"{"),
    ("/api/show", {}),
    ("/api/show", {"model": "no-such-model"}),
    ("/api/show", {"model": ["a"]}),
]


@pytest.mark.parametrize(("path", "body"), BAD_BODIES, ids=[f"{p}-{i}" for i, (p, _) in enumerate(BAD_BODIES)])
def test_bad_input_is_a_4xx_in_ollamas_shape(
    fake_engine_daemon: InProcessDaemon, path: str, body: bytes | dict[str, Any]
) -> None:
    with fake_engine_daemon.client() as client:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = client.post(path, content=content)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()
    assert set(error) == {"error"} and isinstance(error["error"], str) and error["error"]
    if path != "/api/show":  # a generation refused still leaves its one record
        record = record_of(fake_engine_daemon, response.headers["x-request-id"])
        assert record["llm"]["api"] == "ollama" and record["event"]["outcome"] == "failure"


def test_a_refused_field_is_named_and_the_record_names_the_model_asked_for(fake_engine_daemon: InProcessDaemon) -> None:
    with fake_engine_daemon.client() as client:
        response = client.post("/api/chat", json={"model": MODEL, "messages": HELLO, "think": "high"})
    assert response.status_code == 400 and response.json()["error"].startswith("'think' is not supported by trayllm")
    record = record_of(fake_engine_daemon, response.headers["x-request-id"])
    assert record["gen_ai"]["request"]["model"] == MODEL and record["error"]["type"] == "invalid_request"


def test_errors_before_the_route_are_in_ollamas_shape_there_and_openais_elsewhere(start_fake_engine_daemon) -> None:
    daemon = start_fake_engine_daemon(max_body_bytes=1000)
    with daemon.client() as client:
        large = client.post("/api/chat", content=b'{"model": "' + b"x" * 2000 + b'"}')
        method = client.get("/api/chat")
        missing = client.get("/api/nothing-here")
        openai = client.get("/v1/nothing-here")
    assert large.status_code == 413 and "max_body_bytes" in large.json()["error"]
    assert method.status_code == 405 and set(method.json()) == {"error"}
    assert missing.status_code == 404 and "no such endpoint" in missing.json()["error"]
    assert openai.status_code == 404 and openai.json()["error"]["code"] == "not_found"


def test_a_missing_token_on_tcp_is_refused_in_ollamas_shape(tcp_daemon: InProcessDaemon) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        ollama.Client(host=tcp_url(tcp_daemon)).list()
    assert caught.value.status_code == 401 and "token" in caught.value.error
    with httpx.Client(base_url=tcp_url(tcp_daemon)) as client:
        assert client.get("/v1/models").json()["error"]["code"] == "invalid_api_key"


def test_an_engine_failure_is_a_status_or_an_error_line_and_a_failure_record(
    fake_engine_daemon: InProcessDaemon,
) -> None:
    engine = fake_engine_daemon.engine
    engine.fail, engine.fail_after_tokens = EngineOutOfMemory("GPU out of memory"), 1
    seen = Seen()
    client = unix_client(fake_engine_daemon, seen)
    with pytest.raises(ollama.ResponseError) as whole:
        client.chat(model=MODEL, messages=HELLO)
    assert whole.value.status_code == 503 and whole.value.error == "GPU out of memory"
    got: list[str] = []
    with pytest.raises(ollama.ResponseError) as streamed:
        got.extend(part.message.content or "" for part in client.chat(model=MODEL, messages=HELLO, stream=True))
    assert got == ["hello"] and streamed.value.error == "GPU out of memory"  # the line after the text
    for request_id in seen.ids:
        record = record_of(fake_engine_daemon, request_id)
        assert record["event"]["outcome"] == "failure" and record["error"]["type"] == "oom"


def test_closing_a_stream_early_cancels_the_generation_and_its_record_says_so(
    fake_engine_daemon: InProcessDaemon,
) -> None:
    engine = fake_engine_daemon.engine
    engine.script, engine.token_delay_s = "word " * 2000, 0.01
    seen = Seen()
    with unix_client(fake_engine_daemon, seen) as client:
        for count, _ in enumerate(client.generate(model=MODEL, prompt="tell a long story", stream=True), 1):
            if count == 5:
                break
    record = record_of(fake_engine_daemon, seen.ids[0])
    assert record["event"]["outcome"] == "unknown" and record["error"]["type"] == "cancelled"
    assert record["gen_ai"]["usage"]["output_tokens"] < 2000


def test_the_rate_limit_is_a_429_with_retry_after_and_a_record(start_fake_engine_daemon) -> None:
    daemon = start_fake_engine_daemon(rate_limit_per_minute=1, rate_limit_burst=1)
    seen = Seen()
    client = unix_client(daemon, seen)
    client.chat(model=MODEL, messages=HELLO)
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model=MODEL, messages=HELLO)
    assert caught.value.status_code == 429 and "rate limit" in caught.value.error
    with daemon.client() as raw:
        refused = raw.post("/api/generate", json={"model": MODEL, "prompt": "x"})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert record_of(daemon, seen.ids[1])["error"]["type"] == "rate_limited"


def test_a_model_still_loading_is_a_503_with_retry_after_and_none_is_running(
    fake_engine_daemon: InProcessDaemon,
) -> None:
    engine = fake_engine_daemon.engine
    engine.state, engine.info = "loading", None
    with fake_engine_daemon.client() as client:
        response = client.post("/api/chat", json={"model": MODEL, "messages": HELLO})
        running = client.get("/api/ps")
        tags = client.get("/api/tags")
    assert response.status_code == 503 and "not ready" in response.json()["error"]
    assert "retry-after" in response.headers
    assert running.status_code == 200 and running.json() == {"models": []}
    on_this_machine = [f"{MODEL}:latest"] if embedded_gguf() else []  # the embedded model, not loaded yet
    assert [model["name"] for model in tags.json()["models"]] == on_this_machine


@pytest.mark.parametrize("refused", REFUSED_ROUTES, ids=[r.path for r in REFUSED_ROUTES])
def test_model_store_and_embedding_routes_say_what_to_do_instead(fake_engine_daemon: InProcessDaemon, refused) -> None:
    path = refused.path.replace("{digest}", "sha256-0123")
    with fake_engine_daemon.client() as client:
        response = client.request(refused.methods[0], path, json={"model": MODEL, "input": "x"})
    assert response.status_code == 400 and response.json() == {
        "error": f"{refused.methods[0]} {path}: {refused.message}"
    }
    assert not records(fake_engine_daemon)


def test_the_server_answers_ollamas_probes(fake_engine_daemon: InProcessDaemon) -> None:
    with fake_engine_daemon.client() as client:
        root, head = client.get("/"), client.head("/")
        version = client.get("/api/version").json()
    assert root.status_code == head.status_code == 200 and root.text == "Ollama is running"
    assert version == {"version": OLLAMA_VERSION, "trayllm_version": version["trayllm_version"]}
    assert tuple(int(part) for part in OLLAMA_VERSION.split(".")) >= (0, 6, 4)  # VS Code's Copilot's minimum


def write_model_dir(folder: Path) -> Path:
    """A Hugging Face directory the headers describe: qwen2, stored in bfloat16, 3 million parameters."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", "torch_dtype": "bfloat16"}))
    header = json.dumps({"w": {"dtype": "BF16", "shape": [1000, 3000], "data_offsets": [0, 6_000_000]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return folder


def test_tags_ps_and_show_describe_the_served_model_from_its_files(
    fake_engine_daemon: InProcessDaemon, tmp_path: Path
) -> None:
    folder = write_model_dir(tmp_path / "qwen")
    fake_engine_daemon.engine.info = dataclasses.replace(FAKE_INFO, source=str(folder), dtype="bf16")
    seen = Seen()
    client = unix_client(fake_engine_daemon, seen)
    [listed] = client.list().models
    assert listed.details is not None and listed.size == (folder / "model.safetensors").stat().st_size
    details = listed.details
    assert (details.format, details.family, details.parameter_size, details.quantization_level) == (
        "safetensors",
        "qwen2",
        "3M",
        "BF16",
    )
    assert listed.digest and len(listed.digest) == 64
    [running] = client.ps().models
    assert running.model == listed.model and running.size_vram == 0 and running.context_length == 8192  # on CPU
    shown = client.show(MODEL)
    assert shown.modelinfo is not None and shown.modelinfo["qwen2.context_length"] == 8192
    assert (
        shown.modelinfo["general.architecture"] == "qwen2" and shown.modelinfo["general.parameter_count"] == 3 * 10**6
    )
    assert shown.parameters is not None and "num_ctx" in shown.parameters
    with pytest.raises(ollama.ResponseError) as caught:
        client.show("llama3.2")
    assert caught.value.status_code == 404 and f"{MODEL}:latest" in caught.value.error


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = sorted({rule.name.split(".")[0].removesuffix("[]") for rule in RULES} | {"name", "verbose"})
OPTION_NAMES = sorted(rule.name.removeprefix("options.") for rule in RULES if rule.name.startswith("options."))
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "USER", ""]) | JSON_VALUES},
    optional={"content": st.text(max_size=20) | JSON_VALUES, "images": JSON_VALUES, "thinking": JSON_VALUES},
)
BODY = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, f"{MODEL}:latest", "", "other"]) | JSON_VALUES},
    optional={
        "messages": st.lists(MESSAGE, max_size=3) | JSON_VALUES,
        "prompt": st.text(max_size=20) | JSON_VALUES,
        "options": st.dictionaries(st.sampled_from(OPTION_NAMES), JSON_VALUES, max_size=4) | JSON_VALUES,
        **{field: JSON_VALUES for field in FIELDS if field not in ("model", "messages", "prompt", "options")},
    },
)


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(["/api/chat", "/api/generate", "/api/show"]), body=BODY)
def test_generated_bodies_are_answered_without_a_5xx_and_errors_in_ollamas_shape(
    fake_engine_daemon: InProcessDaemon, path: str, body: dict[str, Any]
) -> None:
    with fake_engine_daemon.client() as client:
        response = client.post(path, json=body)
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}, response.text
