"""A tiny OpenAI-shaped server on loopback (http.server in a thread) for the bench's ``--url`` transport.

It streams one content chunk per word of ``"Echo: <prompt>"``, truncated to ``max_tokens``, then the usage chunk
(unless ``with_usage`` is off, as some servers do), then ``data: [DONE]``. It reports more completion tokens in
usage than it sends chunks (``usage_bonus``), so a test can tell which count the bench used. Every request's
path, headers and JSON body are kept for the test to inspect.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class StandIn:
    """What the server does, and what it saw."""

    with_usage: bool = True
    usage_bonus: int = 100
    models: list[str] | None = field(default_factory=lambda: ["peer-model", "other-model"])
    status: int = 200  # anything else: an OpenAI error body with this status for chat completions
    send_done: bool = True
    finish: bool = True
    url: str = ""
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [body for path, _, body in self.requests if path.endswith("/chat/completions")]


def _handler(state: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state.requests.append((self.path, dict(self.headers), None))
            if self.path == "/v1/models" and state.models is not None:
                self._json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in state.models]})
            else:
                self._json(404, {"error": {"message": "no such route", "type": "invalid_request_error"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            state.requests.append((self.path, dict(self.headers), body))
            if state.status != 200:
                self._json(state.status, {"error": {"message": "engine busy", "type": "server_error"}})
                return
            words = f"Echo: {body['messages'][-1]['content']}".split(" ")[: body["max_tokens"]]
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            base = {"id": "c1", "object": "chat.completion.chunk", "model": body.get("model", "peer-model")}
            self._event({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}], "logprobs": None})
            for i, word in enumerate(words):
                self._event({**base, "choices": [{"index": 0, "delta": {"content": word if i == 0 else " " + word}}]})
            if state.finish:
                self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
            if state.with_usage:
                n = len(words) + state.usage_bonus
                self._event(
                    {
                        **base,
                        "choices": [],
                        "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3},
                    }
                )
            if state.send_done:
                self.wfile.write(b"data: [DONE]\n\n")

        def _event(self, payload: dict[str, Any]) -> None:
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

    return Handler


@contextlib.contextmanager
def serve_standin(**options: Any) -> Iterator[StandIn]:
    """A StandIn on an ephemeral loopback port; ``url`` is its base URL (ending in /v1)."""
    state = StandIn(**options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
