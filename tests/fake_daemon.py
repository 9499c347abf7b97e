"""A fake trayllm daemon: a small Starlette app with canned OpenAI-shaped answers, on a real uvicorn.

A test module gets the ``fake_daemon`` fixture by importing ``fake_daemon_fixture`` from here
(conftest.py belongs to the daemon's tests). One server is shared by the whole session.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

READY_STATUS: dict[str, Any] = {
    "state": "ready",
    "model": {
        "name": "fake-model",
        "version": "abc123",
        "source": "/models/fake.gguf",
        "device": "cpu",
        "dtype": "float32",
        "quantization": "none",
        "context_length": 2048,
    },
    "queue": {
        "depth": 1,
        "capacity": 100,
        "in_flight": 2,
        "max_batch": 8,
        "backlog_cap_active": False,
        "backlog_max_tokens": 128,
    },
    "requests": {"completed": 5, "cancelled": 1, "failed": 0, "rejected": 2, "tokens_in": 50, "tokens_out": 300},
    "uptime_s": 3725.0,
    "pid": 4242,
    "version": "0.1.0",
}


def error_body(message: str, type_: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code}}


class FakeDaemon:
    """Canned OpenAI-shaped answers. The last user message picks the scenario:

    RATE -> 429 (Retry-After 7); FULL -> 503 queue_full (Retry-After 2); LONG -> 400 context_length_exceeded;
    MIDSTREAM -> one delta then an OOM error event; GATE -> one delta, then waits for ``gate``;
    anything else -> "Echo: <text>", one chunk per word.
    """

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.ids = itertools.count(0x3F2A1B9C00)
        self.reset()

    def reset(self) -> None:
        self.statuses: list[dict[str, Any]] = [READY_STATUS]
        self.bodies: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self.token: str | None = None
        self.gate = threading.Event()
        self.in_flight = 0
        self.max_in_flight = 0

    def _headers(self) -> dict[str, str]:
        return {"x-request-id": f"{next(self.ids):x}"}

    def _status(self) -> dict[str, Any]:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers=self._headers())

    async def readyz(self, request: Request) -> Response:
        if self.statuses[0]["state"] == "ready":
            return JSONResponse({"status": "ready"}, headers=self._headers())
        return JSONResponse(error_body("loading", "service_unavailable", "model_loading"), 503, self._headers())

    async def status(self, request: Request) -> Response:
        return JSONResponse(self._status(), headers=self._headers())

    async def models(self, request: Request) -> Response:
        card = {
            "id": "fake-model",
            "object": "model",
            "created": 1,
            "owned_by": "trayllm",
            "version": "abc123",
            "context_length": 2048,
        }
        return JSONResponse({"object": "list", "data": [card]}, headers=self._headers())

    async def chat(self, request: Request) -> Response:
        headers = self._headers()
        self.auth_headers.append(request.headers.get("authorization"))
        if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse(error_body("bad token", "authentication_error", "invalid_api_key"), 401, headers)
        body = await request.json()
        self.bodies.append(body)
        text = body["messages"][-1]["content"]
        if "RATE" in text:
            return JSONResponse(
                error_body("slow down", "rate_limit_error", "rate_limit_exceeded"), 429, {**headers, "retry-after": "7"}
            )
        if "FULL" in text:
            return JSONResponse(
                error_body("queue is full", "service_unavailable", "queue_full"), 503, {**headers, "retry-after": "2"}
            )
        if "LONG" in text:
            return JSONResponse(
                error_body("prompt too long", "invalid_request_error", "context_length_exceeded"), 400, headers
            )
        reply = f"Echo: {text}"
        words = [w + " " for w in reply.split(" ")]
        words[-1] = words[-1].rstrip()
        request_id = headers["x-request-id"]
        usage = {"prompt_tokens": 5, "completion_tokens": len(words), "total_tokens": 5 + len(words)}
        timings = {
            "request_id": request_id,
            "queue_ms": 1.0,
            "first_token_ms": 312.0,
            "total_ms": 2310.0,
            "tokens_per_second": 15.2,
        }
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": request_id,
                    "object": "chat.completion",
                    "created": 1,
                    "model": "fake-model",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                    ],
                    "usage": usage,
                    "timings": timings,
                },
                headers=headers,
            )
        include_usage = (body.get("stream_options") or {}).get("include_usage", False)
        return StreamingResponse(
            self._events(request_id, text, words, usage if include_usage else None, timings),
            media_type="text/event-stream",
            headers=headers,
        )

    async def _events(
        self, request_id: str, text: str, words: list[str], usage: dict[str, Any] | None, timings: dict[str, Any]
    ) -> Any:
        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            data = {
                "id": request_id,
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "fake-model",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(data)}\n\n"

        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield chunk({"role": "assistant"})
            if "MIDSTREAM" in text:
                yield chunk({"content": "partial"})
                yield "data: " + json.dumps(error_body("out of memory", "service_unavailable", "oom")) + "\n\n"
                return
            for i, word in enumerate(words):
                yield chunk({"content": word})
                if i == 0 and "GATE" in text:
                    await asyncio.to_thread(self.gate.wait, 10)
                await asyncio.sleep(0)
            yield chunk({}, "stop", **({"usage": usage, "timings": timings} if usage else {}))
            yield "data: [DONE]\n\n"
        finally:
            self.in_flight -= 1

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/v1/status", self.status),
                Route("/v1/models", self.models),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
            ]
        )


@contextmanager
def serve(app: Any, **where: Any) -> Iterator[uvicorn.Server]:
    """Run ``app`` on a real uvicorn in a thread until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="none", **where))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.01)
    assert server.started, "the fake daemon did not start"
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(5)


_shared: FakeDaemon | None = None


def _shared_fake() -> FakeDaemon:
    """Start the session's fake daemon on first use; it stops when the interpreter exits."""
    global _shared
    if _shared is None:
        directory = Path(tempfile.mkdtemp(prefix="tl-fake-", dir="/tmp"))  # short: socket paths max out at 107 bytes
        fake = FakeDaemon(directory / "daemon.sock")
        running = serve(fake.app(), uds=str(fake.socket_path))
        running.__enter__()
        atexit.register(shutil.rmtree, directory, True)
        atexit.register(running.__exit__, None, None, None)
        _shared = fake
    return _shared


@pytest.fixture(name="fake_daemon")
def fake_daemon_fixture() -> Iterator[FakeDaemon]:
    """The session's fake daemon, with its canned state reset for this test."""
    fake = _shared_fake()
    fake.reset()
    yield fake
    fake.gate.set()
