"""The bench's transport to any OpenAI-compatible server (vLLM, llama.cpp's server, `transformers serve`,
Ollama's /v1, another trayllm on TCP), so peers are measured by the same arithmetic as the daemon.

It speaks only standard OpenAI fields: ``stream`` with ``stream_options.include_usage``, and no trayllm
extension, because peers refuse or ignore what they do not know. Chunks are read as plain JSON, not through
trayllm's wire types, since each server adds fields of its own (``logprobs``, ``system_fingerprint``,
``reasoning_content``) and some leave out ones trayllm always sends. The events it yields are the socket
client's (``TextDelta``, ``Done``), so trayllm.bench.load times both the same way; a server that sends no
usage chunk leaves ``Done.usage`` empty and the bench counts content chunks instead.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from trayllm import api, errors
from trayllm.client import DEFAULT_TIMEOUT, Done, StreamEvent, TextDelta, _sse_messages, error_from_body


def read_api_key(path: Path) -> str:
    """The bearer key in ``path`` (surrounding whitespace dropped), so it never shows in a command line."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise errors.ConfigError(f"cannot read the API key file {path}: {exc.strerror}") from None


class OpenAIServer:
    """Streamed chat completions from one OpenAI-compatible base URL (the part before ``/chat/completions``,
    e.g. ``http://127.0.0.1:8080/v1``). Not shared between threads: give each thread its own."""

    def __init__(
        self, base_url: str, *, api_key: str | None = None, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenAIServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Transport failures as request errors: the bench counts them against the server, per request."""
        try:
            yield
        except httpx.ConnectError as exc:
            raise errors.ServiceUnavailable(f"nothing answers at {self.base_url} ({exc})") from None
        except httpx.TimeoutException as exc:
            raise errors.RequestTimeout(f"{self.base_url} did not answer in time ({exc})") from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise errors.EngineFailure(f"lost the connection to {self.base_url} ({exc})") from None

    def _check(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        response.read()
        try:
            body = response.json()
        except ValueError:
            body = response.text or None
        raise error_from_body(body, response.status_code)

    def model_ids(self) -> list[str]:
        """The ids ``GET /models`` lists, in its order."""
        with self._mapped_errors():
            response = self._http.get("/models")
            self._check(response)
        try:
            return [str(card["id"]) for card in response.json()["data"]]
        except (ValueError, KeyError, TypeError) as bad:
            raise errors.EngineFailure(f"{self.base_url}/models is not an OpenAI model list ({bad})") from None

    def stream_chat(self, request: Mapping[str, Any]) -> Iterator[StreamEvent]:
        """Yield ``TextDelta``s as they arrive, then one ``Done``. Closing the iterator closes the stream."""
        body = {**request, "stream": True, "stream_options": {"include_usage": True}}
        finish_reason: str | None = None
        usage: api.Usage | None = None
        ended = False
        with self._mapped_errors(), self._http.stream("POST", "/chat/completions", json=body) as response:
            self._check(response)
            for message in _sse_messages(response.iter_lines()):
                if message.data == "[DONE]":
                    ended = True
                    break
                try:
                    chunk = json.loads(message.data)
                    if "error" in chunk:
                        raise error_from_body(chunk, None)
                    usage = api.Usage.model_validate(chunk["usage"]) if chunk.get("usage") else usage
                    for choice in chunk.get("choices") or ():
                        finish_reason = choice.get("finish_reason") or finish_reason
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield TextDelta(text)
                except (ValueError, TypeError, AttributeError, KeyError) as bad:
                    raise errors.EngineFailure(f"{self.base_url} sent a malformed event ({bad!r})") from None
        if not ended and finish_reason is None:  # a reply that said how it ended is whole, [DONE] or not
            raise errors.EngineFailure(f"{self.base_url} ended the stream without [DONE]")
        yield Done(finish_reason, usage, None, None)


def wait_until_serving(server: OpenAIServer, model: str | None, timeout: float) -> str | None:
    """The model to ask for, once the server answers: ``model``, else the first it lists (None if it lists
    none). Waits up to ``timeout`` seconds while nothing answers or the server says it is loading (503)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ids = server.model_ids()
        except errors.ServiceUnavailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
            continue
        except errors.RequestError as exc:
            if exc.status_code != 404:  # a server without /models is still serving
                raise
            ids = []
        return model or (ids[0] if ids else None)
