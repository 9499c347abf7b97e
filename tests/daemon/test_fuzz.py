"""Hostile bodies: 10,000 generated chat requests, and not one 5xx, lost record or sick daemon.

A real daemon serves a tiny random Llama (the real SmolLM2 tokenizer and chat template, 2 small layers),
so valid requests generate for real in milliseconds and the run fits in CI time. The bodies come from
hypothesis, derandomized so CI sees the same 10,000 every run, sent by 8 clients at once: valid
requests, valid requests with one field made hostile, wrong types and shapes, raw bytes, truncated and
deeply nested JSON, non-standard numbers. Each answer must be a 2xx, or a 4xx with an OpenAI-shaped
error body; afterwards every request id the daemon gave out has exactly one record, and a plain request
is served.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch
from daemons import RunningDaemon, spawn_daemon
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from waiting import wait_for

from trayllm.telemetry.reader import iter_records

pytestmark = pytest.mark.slow

BODIES = 10_000
CLIENTS = 8  # the daemon's max_batch
ROUTE = "/v1/chat/completions"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, converted_model_dir: Path) -> Path:
    """A random 2-layer Llama saved as a Hugging Face directory, with the embedded model's tokenizer."""
    out = tmp_path_factory.mktemp("tiny-model")
    tokenizer = AutoTokenizer.from_pretrained(converted_model_dir)
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[RunningDaemon]:
    running = spawn_daemon(
        tmp_path_factory.mktemp("fuzz"),
        model=str(tiny_model_dir),
        rate_limit_per_minute=0,
        default_max_tokens=4,
        warmup=False,
    )
    yield running
    running.stop()


# -- the bodies -----------------------------------------------------------------------------------------


def _json_values(depth: int = 2) -> st.SearchStrategy[object]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=40),
    )
    if depth == 0:
        return scalars
    inner = _json_values(depth - 1)
    return st.one_of(scalars, st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4))


HOSTILE = _json_values()
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
ROLES = st.sampled_from(["system", "user", "assistant", "developer", "tool", "function", "", "USER", "root"])
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": ROLES, "content": TEXT}),
    st.fixed_dictionaries(
        {
            "role": ROLES,
            "content": st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["text", "image_url", "input_audio", "x"]), "text": TEXT}
                ),
                max_size=3,
            ),
        }
    ),
    st.dictionaries(
        st.sampled_from(["role", "content", "name", "tool_calls", "tool_call_id", "extra"]), HOSTILE, max_size=4
    ),
    HOSTILE,
)
# Fields the API knows, each with plausible values and hostile ones.
FIELDS: dict[str, st.SearchStrategy[object]] = {
    "model": st.one_of(st.just("smollm2-135m-instruct"), TEXT, HOSTILE),
    "max_tokens": st.one_of(
        st.integers(min_value=1, max_value=4), st.integers(min_value=-(2**70), max_value=2**70), HOSTILE
    ),
    "max_completion_tokens": st.one_of(st.integers(min_value=1, max_value=3), HOSTILE),
    "temperature": st.one_of(st.floats(min_value=0, max_value=2), st.sampled_from([1e-300, 5e-324, -0.0]), HOSTILE),
    "top_p": st.one_of(st.floats(min_value=0, max_value=1), st.sampled_from([1e-300, 5e-324]), HOSTILE),
    "seed": st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63 - 1), st.integers(min_value=-(2**90), max_value=2**90), HOSTILE
    ),
    "stop": st.one_of(TEXT, st.lists(TEXT, max_size=6), HOSTILE),
    "stream": st.one_of(st.booleans(), HOSTILE),
    "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": st.booleans()}), HOSTILE),
    "n": st.one_of(st.integers(min_value=-3, max_value=3), HOSTILE),
    "user": st.one_of(TEXT, HOSTILE),
    "repetition_penalty": st.one_of(st.floats(min_value=0, max_value=3), HOSTILE),
    "frequency_penalty": st.one_of(st.floats(min_value=-2, max_value=2), HOSTILE),
    "presence_penalty": st.one_of(st.floats(min_value=-2, max_value=2), HOSTILE),
    "logprobs": st.one_of(st.booleans(), HOSTILE),
    "response_format": st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])}), HOSTILE),
    "tools": HOSTILE,
    "logit_bias": HOSTILE,
    "unknown_field": HOSTILE,
}
# Every field wild at once: nearly always refused somewhere.
WILD = st.fixed_dictionaries(
    {"messages": st.one_of(st.lists(MESSAGE, min_size=1, max_size=4), HOSTILE)},
    optional=FIELDS,
)
# What a well-behaved client sends: these must be served.
VALID_FIELDS: dict[str, st.SearchStrategy[object]] = {
    "max_tokens": st.integers(min_value=1, max_value=4),
    "temperature": st.one_of(st.floats(min_value=0, max_value=2), st.just(1e-300)),
    "top_p": st.one_of(st.floats(min_value=1e-300, max_value=1, exclude_min=False), st.just(1.0)),
    "seed": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "stop": st.lists(st.text(min_size=1, max_size=8), max_size=4),
    "stream": st.booleans(),
    "user": st.text(max_size=20),
    "repetition_penalty": st.floats(min_value=1, max_value=2),
}


def _conversation(system: str | None, turns: list[str]) -> list[dict[str, str]]:
    """An optional system prompt, then user and assistant turns ending with the user's."""
    roles = ["user" if (len(turns) - i) % 2 else "assistant" for i in range(len(turns))]
    head = [] if system is None else [{"role": "system", "content": system}]
    return head + [{"role": role, "content": text} for role, text in zip(roles, turns, strict=True)]


VALID = st.fixed_dictionaries(
    {"messages": st.builds(_conversation, st.none() | TEXT, st.lists(TEXT, min_size=1, max_size=3))},
    optional=VALID_FIELDS,
)
# A valid request with one field (or the messages) made hostile: the edge must name it, not crash.
ONE_HOSTILE = st.tuples(VALID, st.sampled_from(["messages", *FIELDS]), HOSTILE).map(lambda t: {**t[0], t[1]: t[2]})


def _encode(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode()  # NaN and Infinity: not JSON, but what a sloppy client sends


def _nested(depth: int, opener: str) -> bytes:
    """``{"messages": [[[...]]]}`` or ``{"messages": {"a": {"a": ...}}}``, ``depth`` levels down."""
    down, up = ("[", "]") if opener == "[" else ('{"a":', "}")
    return ('{"messages":' + down * depth + "1" + up * depth + "}").encode()


RAW = st.one_of(
    st.binary(max_size=200),
    WILD.map(_encode).flatmap(lambda b: st.integers(min_value=0, max_value=len(b)).map(lambda n: b[:n])),
    st.tuples(st.integers(min_value=1, max_value=200_000), st.sampled_from("[{")).map(lambda t: _nested(*t)),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b'"messages"',
            b"1e999",
            b'{"messages": 1e999}',
            b"\xff\xfe{}",
            b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
            b'{"messages": [], "messages": 1}',
        ]
    ),
)
BODY = st.one_of(VALID.map(_encode), ONE_HOSTILE.map(_encode), WILD.map(_encode), RAW)


# -- the run --------------------------------------------------------------------------------------------


def generated_bodies(count: int) -> list[bytes]:
    """``count`` bodies drawn by hypothesis, derandomized: the same list on every run.

    Hypothesis draws them but does not send them: sent one at a time under ``@given`` the run would not
    fit in CI, sent by several clients at once the valid ones share batches, as real traffic does. A
    failure names its body instead of shrinking it.
    """
    bodies: list[bytes] = []

    @settings(
        max_examples=count, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(body=BODY)
    def collect(body: bytes) -> None:
        bodies.append(body)

    collect()
    return bodies


def problem_with(response: httpx.Response, body: bytes) -> str | None:
    """Why this answer is not acceptable (None if it is): a 5xx, no request id, an error without
    OpenAI's shape, or a 200 that is not a whole reply."""
    status = response.status_code
    where = f"{status} for {body[:200]!r}: {response.text[:200]}"
    if status >= 500:
        return where
    if not response.headers.get("x-request-id"):
        return f"no request id: {where}"
    if status >= 400:
        error = response.json().get("error") if response.headers.get("content-type") == "application/json" else None
        if not (
            isinstance(error, dict) and isinstance(error.get("message"), str) and isinstance(error.get("type"), str)
        ):
            return f"not an OpenAI error body: {where}"
    elif response.headers.get("content-type", "").startswith("text/event-stream"):
        lines = response.text.splitlines()
        if "data: [DONE]" not in lines or any(line.startswith("data:") and '"error"' in line for line in lines):
            return f"a stream that did not end well: {where} ... {response.text[-200:]}"
    elif response.json()["choices"][0]["message"]["role"] != "assistant":
        return f"not a reply: {where}"
    return None


def test_ten_thousand_hostile_bodies_get_no_5xx_and_one_record_each(fuzz_daemon: RunningDaemon) -> None:
    bodies = generated_bodies(BODIES)
    assert len(bodies) >= BODIES
    local = threading.local()
    clients: list[httpx.Client] = []

    def send(body: bytes) -> tuple[int, str, str | None]:
        if not hasattr(local, "client"):
            local.client = fuzz_daemon.client(timeout=120)
            clients.append(local.client)
        try:
            response = local.client.post(ROUTE, content=body, headers={"content-type": "application/json"})
        except httpx.TransportError as exc:
            return 0, "", f"no answer ({exc!r}) for {body[:200]!r} ({len(body)} bytes)"
        return response.status_code, response.headers.get("x-request-id", ""), problem_with(response, body)

    try:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            answers = list(pool.map(send, bodies))
    finally:
        for client in clients:
            client.close()
    problems = [p for _, _, p in answers if p is not None]
    assert problems == [], f"{len(problems)} bad answers, the first: {problems[:5]}"
    statuses = Counter(status for status, _, _ in answers)
    assert statuses[200] > BODIES // 10, f"too few bodies were served for the engine to be tested: {statuses}"
    assert sum(n for s, n in statuses.items() if s >= 400) > BODIES // 2, statuses

    with fuzz_daemon.client() as client:
        wait_for(lambda: fuzz_daemon.status()["queue"]["in_flight"] == 0, timeout=60)
        served = client.post(ROUTE, json={"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3})
        assert served.status_code == 200, served.text
    request_ids = [request_id for _, request_id, _ in answers] + [served.headers["x-request-id"]]
    wanted = Counter(request_ids)
    assert max(wanted.values()) == 1, "the daemon gave one request id twice"

    records_path = fuzz_daemon.records

    def recorded() -> Counter[str]:
        return Counter(r["event"]["id"] for r in iter_records(records_path))

    wait_for(lambda: sum(recorded().values()) >= len(request_ids), timeout=60)
    got = recorded()
    assert got == wanted, (
        f"{len(wanted - got)} requests without a record, {len(got - wanted)} records without a request or duplicated"
    )
