"""Hostile bodies: 10,000 generated requests to every route that takes a body, and not one 5xx, lost record or
sick daemon.

A real daemon serves a tiny random Llama (the real SmolLM2 tokenizer and chat template, 2 small layers),
so valid requests generate for real in milliseconds and the run fits in CI time. The bodies come from
hypothesis, derandomized so CI sees the same 10,000 every run, shared among OpenAI's chat and legacy completions,
Ollama's chat, generate and show, and the Ollama endpoints trayllm refuses, mixed, and sent by 8 clients at once:
valid requests, valid requests with one field made hostile, wrong types and shapes, raw bytes, truncated and
deeply nested JSON, non-standard numbers. Each answer must be a 2xx, or a 4xx in its route's own error shape
(OpenAI's object under /v1, Ollama's string under /api); afterwards every generation request has exactly one
record (an Ollama load request, a body without a prompt, generates nothing and has none; nor have the others),
and a plain request is served.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from daemons import RunningDaemon, spawn_daemon
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from waiting import wait_for

from trayllm.config import Settings
from trayllm.daemon.edge import json_object
from trayllm.daemon.generation import validated
from trayllm.errors import InvalidRequest
from trayllm.ollama_api import ChatRequest, GenerateRequest
from trayllm.ollama_rules import REFUSED_ROUTES, RULES
from trayllm.telemetry.reader import iter_records

pytestmark = pytest.mark.slow

BODIES = 10_000
CLIENTS = 8  # the daemon's max_batch
ROUTE = "/v1/chat/completions"
NDJSON = "application/x-ndjson"


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
        st.sampled_from(["role", "content", "name", "tool_calls", "tool_call_id", "images", "thinking", "extra"]),
        HOSTILE,
        max_size=4,
    ),
    HOSTILE,
)
# OpenAI's fields, each with plausible values and hostile ones.
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
    "logprobs": st.one_of(st.booleans(), st.integers(min_value=0, max_value=2), HOSTILE),
    "response_format": st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])}), HOSTILE),
    "tools": HOSTILE,
    "logit_bias": HOSTILE,
    "echo": st.one_of(st.booleans(), HOSTILE),
    "suffix": HOSTILE,
    "unknown_field": HOSTILE,
}
# What a well-behaved OpenAI client sends: these must be served.
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
# Ollama's fields (each a rule's, and others) and options, hostile; and what its clients send.
OLLAMA_FIELDS = sorted({rule.name.split(".")[0].removesuffix("[]") for rule in RULES} | {"name", "verbose", "extra"})
OPTION_NAMES = sorted({rule.name.removeprefix("options.") for rule in RULES if rule.name.startswith("options.")})
OPTIONS = st.one_of(st.dictionaries(st.sampled_from([*OPTION_NAMES, "extra"]), HOSTILE, max_size=4), HOSTILE)
VALID_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "num_predict": st.integers(min_value=-2, max_value=4),
        "temperature": st.floats(min_value=0, max_value=2),
        "top_p": st.floats(min_value=1e-300, max_value=1),
        "seed": st.integers(min_value=-1, max_value=2**63 - 1),
        "stop": st.lists(st.text(min_size=1, max_size=8), max_size=4),
        "repeat_penalty": st.floats(min_value=1, max_value=2),
        "top_k": st.integers(min_value=0, max_value=100),  # ignored, and named in a header
        "num_ctx": st.integers(min_value=0, max_value=4096),
    },
)


def _conversation(system: str | None, turns: list[str]) -> list[dict[str, str]]:
    """An optional system prompt, then user and assistant turns ending with the user's."""
    roles = ["user" if (len(turns) - i) % 2 else "assistant" for i in range(len(turns))]
    head = [] if system is None else [{"role": "system", "content": system}]
    return head + [{"role": role, "content": text} for role, text in zip(roles, turns, strict=True)]


CONVERSATION = st.builds(_conversation, st.none() | TEXT, st.lists(TEXT, min_size=1, max_size=3))


def _encode(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode()  # NaN and Infinity: not JSON, but what a sloppy client sends


def _nested(depth: int, opener: str) -> bytes:
    """``{"messages": [[[...]]]}`` or ``{"messages": {"a": {"a": ...}}}``, ``depth`` levels down."""
    down, up = ("[", "]") if opener == "[" else ('{"a":', "}")
    return ('{"messages":' + down * depth + "1" + up * depth + "}").encode()


RAW_CONSTANTS = st.sampled_from(
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
)


def _raw(wild: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Bytes, truncated encodings of ``wild`` bodies, deep nesting and constants no route can take."""
    return st.one_of(
        st.binary(max_size=200),
        wild.map(_encode).flatmap(lambda b: st.integers(min_value=0, max_value=len(b)).map(lambda n: b[:n])),
        st.tuples(st.integers(min_value=1, max_value=200_000), st.sampled_from("[{")).map(lambda t: _nested(*t)),
        RAW_CONSTANTS,
    )


def bodies(
    valid: st.SearchStrategy[dict[str, Any]],
    base: dict[str, st.SearchStrategy[object]],
    fields: dict[str, st.SearchStrategy[object]],
) -> st.SearchStrategy[bytes]:
    """A route's mix: ``valid`` bodies; valid ones with one field (or a ``base`` one) made hostile, for the edge
    to name rather than crash on; ``base`` and every one of ``fields`` wild at once, nearly always refused
    somewhere; and raw bytes."""
    one_hostile = st.tuples(valid, st.sampled_from([*base, *fields]), HOSTILE).map(lambda t: {**t[0], t[1]: t[2]})
    wild = st.fixed_dictionaries(base, optional={name: value for name, value in fields.items() if name not in base})
    return st.one_of(valid.map(_encode), one_hostile.map(_encode), wild.map(_encode), _raw(wild))


@dataclass(frozen=True)
class Target:
    """A route and its share of the bodies."""

    method: str
    path: str
    share: float
    bodies: st.SearchStrategy[bytes]
    reply_ok: Callable[[dict[str, Any]], bool] | None  # a whole 200 reply is well formed; None: never a 200

    @property
    def ollama(self) -> bool:
        return self.path.startswith("/api/")

    def generates(self, body: bytes) -> bool:
        """Whether the daemon takes ``body`` as a generation, which leaves one record, refused or not: any body
        to the four generation routes except Ollama's load request (valid, with no messages or prompt)."""
        if self.path in ("/v1/chat/completions", "/v1/completions"):
            return True
        if self.path not in ("/api/chat", "/api/generate"):
            return False
        schema = ChatRequest if self.path == "/api/chat" else GenerateRequest
        try:
            parsed = validated(schema, json_object(body, max_depth=Settings().max_json_depth))
        except InvalidRequest:
            return True
        return bool(parsed.messages if isinstance(parsed, ChatRequest) else parsed.prompt)


def targets(model: str) -> list[Target]:
    """Every route that takes a body, ``model`` being the name the daemon serves; the shares add up to 1."""
    hostile = {name: HOSTILE for name in OLLAMA_FIELDS}
    models = st.sampled_from([model, f"{model}:latest", "", "other"]) | HOSTILE
    ollama_optional = {"stream": st.booleans(), "options": VALID_OPTIONS, "keep_alive": st.sampled_from(["5m", -1])}
    ollama_chat = st.fixed_dictionaries(
        {"model": st.sampled_from([model, f"{model}:latest"]), "messages": CONVERSATION}, optional=ollama_optional
    )
    generate = st.fixed_dictionaries(
        {"model": st.just(model), "prompt": TEXT}, optional={**ollama_optional, "system": TEXT, "raw": st.booleans()}
    )
    refused = st.one_of(HOSTILE.map(_encode), _raw(st.dictionaries(st.text(max_size=8), HOSTILE)))
    share = 0.05 / len(REFUSED_ROUTES)
    return [
        Target(
            "POST",
            ROUTE,
            0.4,
            bodies(
                st.fixed_dictionaries({"messages": CONVERSATION}, optional=VALID_FIELDS),
                {"messages": st.one_of(st.lists(MESSAGE, min_size=1, max_size=4), HOSTILE)},
                FIELDS,
            ),
            lambda reply: reply["choices"][0]["message"]["role"] == "assistant",
        ),
        Target(
            "POST",
            "/v1/completions",
            0.2,
            bodies(
                st.fixed_dictionaries({"prompt": TEXT | st.lists(TEXT, min_size=1, max_size=1)}, optional=VALID_FIELDS),
                {"prompt": st.one_of(TEXT, st.lists(TEXT, max_size=2), HOSTILE)},
                FIELDS,
            ),
            lambda reply: isinstance(reply["choices"][0]["text"], str),
        ),
        Target(
            "POST",
            "/api/chat",
            0.15,
            bodies(
                ollama_chat,
                {"model": models, "messages": st.one_of(st.lists(MESSAGE, max_size=4), HOSTILE)},
                {**hostile, "options": OPTIONS},
            ),
            lambda reply: reply["done"] is True and reply["message"]["role"] == "assistant",
        ),
        Target(
            "POST",
            "/api/generate",
            0.15,
            bodies(generate, {"model": models, "prompt": st.one_of(TEXT, HOSTILE)}, {**hostile, "options": OPTIONS}),
            lambda reply: reply["done"] is True and isinstance(reply["response"], str),
        ),
        Target(
            "POST",
            "/api/show",
            0.05,
            bodies(st.fixed_dictionaries({"model": models}), {"model": models}, {"name": models, "verbose": HOSTILE}),
            lambda reply: isinstance(reply["details"], dict),
        ),
        *(Target(r.methods[0], r.path.replace("{digest}", "sha256-0"), share, refused, None) for r in REFUSED_ROUTES),
    ]


# -- the run --------------------------------------------------------------------------------------------


def generated_bodies(strategy: st.SearchStrategy[bytes], count: int) -> list[bytes]:
    """``count`` bodies drawn by hypothesis, derandomized: the same list on every run.

    Hypothesis draws them but does not send them: sent one at a time under ``@given`` the run would not
    fit in CI, sent by several clients at once the valid ones share batches, as real traffic does. A
    failure names its body instead of shrinking it.
    """
    drawn: list[bytes] = []

    @settings(
        max_examples=count, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(body=strategy)
    def collect(body: bytes) -> None:
        drawn.append(body)

    collect()
    return drawn[:count]


def error_shaped(target: Target, response: httpx.Response) -> bool:
    """OpenAI's ``{"error": {"message", "type", ...}}``, or under /api/ Ollama's ``{"error": "..."}``."""
    if response.headers.get("content-type") != "application/json":
        return False
    body = response.json()
    if target.ollama:
        return isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str)
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and isinstance(error.get("message"), str) and isinstance(error.get("type"), str)


def problem_with(target: Target, response: httpx.Response, body: bytes) -> str | None:
    """Why this answer is not acceptable (None if it is): a 5xx, no request id, an error not in the route's
    shape, or a 200 that is not a whole reply."""
    status = response.status_code
    where = f"{status} for {target.path} {body[:200]!r}: {response.text[:200]}"
    kind = response.headers.get("content-type", "")
    if status >= 500:
        return where
    if not response.headers.get("x-request-id"):
        return f"no request id: {where}"
    if status >= 400:
        return None if error_shaped(target, response) else f"not the route's error shape: {where}"
    if target.reply_ok is None:
        return f"should have been refused: {where}"
    if kind.startswith("text/event-stream"):
        lines = response.text.splitlines()
        if "data: [DONE]" not in lines or any(line.startswith("data:") and '"error"' in line for line in lines):
            return f"a stream that did not end well: {where} ... {response.text[-200:]}"
    elif kind.startswith(NDJSON):
        lines = [json.loads(line) for line in response.text.splitlines()]
        if not lines or lines[-1].get("done") is not True or any("error" in line for line in lines):
            return f"a stream that did not end well: {where} ... {response.text[-200:]}"
    elif not target.reply_ok(response.json()):
        return f"not a reply: {where}"
    return None


def test_ten_thousand_hostile_bodies_get_no_5xx_and_one_record_each(fuzz_daemon: RunningDaemon) -> None:
    with fuzz_daemon.client() as client:
        model = client.get("/v1/models").json()["data"][0]["id"]
    sends = [
        (target, body)
        for target in targets(model)
        for body in generated_bodies(target.bodies, round(BODIES * target.share))
    ]
    assert len(sends) >= BODIES - len(REFUSED_ROUTES)
    random.Random(0).shuffle(sends)  # the routes' requests share batches, as real traffic does
    local = threading.local()
    clients: list[httpx.Client] = []

    def send(sending: tuple[Target, bytes]) -> tuple[str, int, str, str | None]:
        target, body = sending
        if not hasattr(local, "client"):
            local.client = fuzz_daemon.client(timeout=120)
            clients.append(local.client)
        headers = {"content-type": "application/json"}
        try:
            response = local.client.request(target.method, target.path, content=body, headers=headers)
        except httpx.TransportError as exc:
            return target.path, 0, "", f"no answer ({exc!r}) for {target.path} {body[:200]!r} ({len(body)} bytes)"
        request_id = response.headers.get("x-request-id", "")
        return target.path, response.status_code, request_id, problem_with(target, response, body)

    try:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            answers = list(pool.map(send, sends))
    finally:
        for client in clients:
            client.close()
    problems = [p for _, _, _, p in answers if p is not None]
    assert problems == [], f"{len(problems)} bad answers, the first: {problems[:5]}"
    for target in targets(model)[:4]:  # each generation route served enough for its engine path to be tested
        statuses = Counter(status for path, status, _, _ in answers if path == target.path)
        assert statuses[200] > BODIES * target.share // 10, f"too few {target.path} bodies were served: {statuses}"
    statuses = Counter(status for _, status, _, _ in answers)
    assert sum(n for s, n in statuses.items() if s >= 400) > BODIES // 2, statuses

    with fuzz_daemon.client() as client:
        wait_for(lambda: fuzz_daemon.status()["queue"]["in_flight"] == 0, timeout=60)
        served = client.post(ROUTE, json={"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3})
        assert served.status_code == 200, served.text
    given_out = Counter([request_id for _, _, request_id, _ in answers] + [served.headers["x-request-id"]])
    assert max(given_out.values()) == 1, "the daemon gave one request id twice"
    wanted = Counter(
        [
            request_id
            for (target, body), (_, _, request_id, _) in zip(sends, answers, strict=True)
            if target.generates(body)
        ]
        + [served.headers["x-request-id"]]
    )

    records_path = fuzz_daemon.records

    def recorded() -> Counter[str]:
        return Counter(r["event"]["id"] for r in iter_records(records_path))

    wait_for(lambda: sum(recorded().values()) >= sum(wanted.values()), timeout=60)
    got = recorded()
    assert got == wanted, (
        f"{len(wanted - got)} requests without a record, {len(got - wanted)} records without a request or duplicated"
    )
