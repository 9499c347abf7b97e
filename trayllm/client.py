"""One typed client for every consumer: the CLI, tray, chat window and bench talk to the daemon through it.

HTTP over the daemon's Unix socket (or loopback TCP with a bearer token). Foreign errors are
translated at this boundary: no daemon -> ``DaemonNotRunning``; an OpenAI-shaped error body
(or an error event mid-stream) -> the matching ``RequestError`` subclass. A socket served by another
user is refused on connect, before a byte of the request leaves: ``Untrusted``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pydantic

from trayllm import api, api_status, errors, trust
from trayllm.config import Settings

__all__ = ["DEFAULT_TIMEOUT", "DaemonClient", "DaemonEvent", "Done", "StreamEvent", "TextDelta", "own_daemon_transport"]

# connect fast or report "no daemon"; reads may wait behind a queue for minutes
DEFAULT_TIMEOUT = httpx.Timeout(330.0, connect=5.0)
# /v1/events sends a keepalive every 15 s: a read silent for much longer means a dead connection
EVENTS_READ_TIMEOUT = 45.0


@dataclass(frozen=True)
class TextDelta:
    """New reply text."""

    text: str


@dataclass(frozen=True)
class Done:
    """The end of a streamed reply."""

    finish_reason: str | None
    usage: api.Usage | None
    timings: api.Timings | None
    request_id: str | None


StreamEvent = TextDelta | Done


@dataclass(frozen=True)
class DaemonEvent:
    """One /v1/events message: ``hello`` (no id: the snapshot on connect), ``gap``, ``alert.firing``,
    ``alert.resolved``, ``model.loaded``, ``model.reloading``, ``model.failed``, ``serving.paused``,
    ``serving.resumed``, ``daemon.shutting_down``."""

    type: str
    data: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True)
class _SseMessage:
    event: str
    data: str
    id: str | None


def error_from_body(body: Any, status_code: int | None, retry_after: float | None = None) -> errors.RequestError:
    """The RequestError subclass for an OpenAI-shaped error body, chosen by status code and ``code``."""
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        message, code, param = str(detail.get("message", "")), detail.get("code"), detail.get("param")
    else:  # not our shape (a proxy, or a framework's own 422): keep whatever text there is
        message, code, param = json.dumps(body) if body is not None else "", None, None
    candidates = [c for c in errors.request_error_classes() if status_code is None or c.status_code == status_code]
    cls = next((c for c in candidates if c.code == code), None)
    if cls is None and status_code is not None:
        cls = next((c for c in candidates if c.__bases__[0] is errors.RequestError), None)
    if cls is None:
        cls = errors.InvalidRequest if status_code is not None and 400 <= status_code < 500 else errors.EngineFailure
    return cls(message or f"the daemon answered HTTP {status_code}", param=param, retry_after=retry_after)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _sse_messages(lines: Iterator[str]) -> Iterator[_SseMessage]:
    """Each server-sent event (multi-line data joined by newlines; comments and ``retry`` skipped)."""
    data: list[str] = []
    event, event_id = "message", None
    for line in lines:
        if not line:
            if data:
                yield _SseMessage(event, "\n".join(data), event_id)
            data, event, event_id = [], "message", None
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            event_id = value
    if data:
        yield _SseMessage(event, "\n".join(data), event_id)


class _OwnDaemonBackend(httpcore.SyncBackend):
    """httpcore's sockets, with the listener on a Unix socket checked to be the user's before it is used."""

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        stream = super().connect_unix_socket(path, timeout, socket_options)
        try:
            trust.check_peer(stream.get_extra_info("socket"), path)
        except BaseException:
            stream.close()
            raise
        return stream


def own_daemon_transport(socket_path: str) -> httpx.HTTPTransport:
    """httpx's transport on ``socket_path``, connecting through _OwnDaemonBackend: for any httpx-based client
    (the openai SDK, say) that should refuse a socket another user serves, as DaemonClient does.

    httpx takes no network backend, so its pool is swapped for httpcore's own with ours (keep-alive
    as httpx's default); every request still goes through httpx's transport and its error mapping.
    """
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(
        uds=socket_path, network_backend=_OwnDaemonBackend(), keepalive_expiry=5.0
    )
    return transport


class DaemonClient:
    """Synchronous client for one daemon. Not shared between threads: give each thread its own."""

    def __init__(
        self,
        *,
        socket_path: Path | str | None = None,
        url: str | None = None,
        token: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    ) -> None:
        if (socket_path is None) == (url is None):
            raise ValueError("give exactly one of socket_path or url")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        if socket_path is not None:
            self.where = str(socket_path)
            transport = own_daemon_transport(self.where)
            self._http = httpx.Client(transport=transport, base_url="http://trayllm", headers=headers, timeout=timeout)
        else:
            self.where = str(url)
            self._http = httpx.Client(base_url=str(url), headers=headers, timeout=timeout)
        self.last_request_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, tcp: bool = False, **kwargs: Any) -> DaemonClient:
        """The socket client; with ``tcp=True`` the ``listen`` address and the token file instead."""
        if not tcp:
            return cls(socket_path=settings.socket_path, **kwargs)
        if not settings.listen:
            raise errors.ConfigError("TCP needs the listen setting (TRAYLLM_LISTEN=127.0.0.1:PORT)")
        try:
            token = settings.token_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise errors.ConfigError(f"cannot read the token file {settings.token_path}: {exc.strerror}") from None
        return cls(url=f"http://{settings.listen}", token=token, **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the boundary -------------------------------------------------------------

    @contextlib.contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Turn transport failures into trayllm errors."""
        try:
            yield
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError):
            raise errors.DaemonNotRunning(
                f"no trayllm daemon on {self.where}; start one with `trayllm daemon` or `trayllm up`"
            ) from None
        except httpx.TimeoutException as exc:
            raise errors.RequestTimeout(f"the daemon on {self.where} did not answer in time ({exc})") from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise errors.DaemonNotRunning(f"lost the connection to the daemon on {self.where} ({exc})") from None

    def _check(self, response: httpx.Response) -> httpx.Response:
        self.last_request_id = response.headers.get("x-request-id") or self.last_request_id
        if response.is_success:
            return response
        response.read()
        try:
            body = response.json()
        except ValueError:
            body = response.text or None
        exc = error_from_body(body, response.status_code, _retry_after(response))
        exc.request_id = response.headers.get("x-request-id")
        raise exc

    def _get(self, path: str) -> httpx.Response:
        with self._mapped_errors():
            return self._check(self._http.get(path))

    def _send(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        with self._mapped_errors():
            return self._check(self._http.request(method, path, json=body)).json()

    # -- endpoints ----------------------------------------------------------------

    def health(self) -> bool:
        """True if a daemon answers ``/healthz``; False if none is there."""
        return self._succeeds("/healthz")

    def ready(self) -> bool:
        """True once the model is loaded and warmed; False while loading or with no daemon."""
        return self._succeeds("/readyz")

    def _succeeds(self, path: str) -> bool:
        try:
            with self._mapped_errors():
                return self._http.get(path).is_success
        except errors.DaemonNotRunning:
            return False

    def status(self) -> api_status.DaemonStatus:
        return api_status.DaemonStatus.model_validate(self._get("/v1/status").json())

    def models(self) -> api.ModelList:
        return api.ModelList.model_validate(self._get("/v1/models").json())

    def model(self, model_id: str) -> api.ModelCard:
        """One model by id (ModelNotFound when the daemon does not serve it)."""
        return api.ModelCard.model_validate(self._get(f"/v1/models/{model_id}").json())

    def chat(self, request: api.ChatCompletionRequest | Mapping[str, Any]) -> api.ChatCompletion:
        body = _request_body(request, stream=False)
        with self._mapped_errors():
            response = self._check(self._http.post("/v1/chat/completions", json=body))
        return api.ChatCompletion.model_validate(response.json())

    def stream_chat(self, request: api.ChatCompletionRequest | Mapping[str, Any]) -> Generator[StreamEvent, None, None]:
        """Yield ``TextDelta``s as they arrive, then one ``Done``. Closing the iterator cancels the request."""
        body = _request_body(request, stream=True)
        finish_reason: str | None = None
        usage: api.Usage | None = None
        timings: api.Timings | None = None
        with self._mapped_errors(), self._http.stream("POST", "/v1/chat/completions", json=body) as response:
            self._check(response)
            request_id = response.headers.get("x-request-id")
            for message in _sse_messages(response.iter_lines()):
                data = message.data
                if data == "[DONE]":
                    yield Done(finish_reason, usage, timings, request_id)
                    return
                try:
                    payload = json.loads(data)
                    if isinstance(payload, dict) and "error" in payload:
                        exc = error_from_body(payload, None)
                        exc.request_id = request_id
                        raise exc
                    chunk = api.ChatCompletionChunk.model_validate(payload)
                except ValueError as bad:  # not JSON, or not a chunk
                    raise errors.EngineFailure(f"the daemon sent a malformed event ({bad})") from None
                usage, timings = chunk.usage or usage, chunk.timings or timings
                for choice in chunk.choices:
                    finish_reason = choice.finish_reason or finish_reason
                    if choice.delta.content:
                        yield TextDelta(choice.delta.content)
        raise errors.EngineFailure(f"the daemon ended the stream without [DONE] (request {request_id})")

    def slo(self) -> api_status.SloReport:
        return api_status.SloReport.model_validate(self._get("/v1/slo").json())

    def pause(self, reason: str | None = None) -> None:
        """New requests get 503 ``paused`` until ``resume``."""
        self._send("POST", "/v1/pause", {"reason": reason} if reason else None)

    def resume(self) -> None:
        self._send("POST", "/v1/resume")

    def reload(self, model: str | None = None) -> None:
        """Start a reload of the model, or with ``model`` (a ``model`` setting's value) a switch to another; it ends
        with a ``model.loaded`` or ``model.failed`` event. A switch that cannot work raises InvalidRequest at once,
        and the daemon keeps serving the model it has."""
        self._send("POST", "/v1/reload", None if model is None else {"model": model})

    def set_faults(self, **plan: Any) -> dict[str, Any]:
        """Fault injection (daemon started with ``fault_injection``): see ``engine.faults.Faults``."""
        return dict(self._send("PUT", "/v1/faults", plan))

    def clear_faults(self) -> dict[str, Any]:
        return dict(self._send("DELETE", "/v1/faults"))

    def events(self, last_event_id: str | None = None) -> Generator[DaemonEvent, None, None]:
        """Follow /v1/events until the daemon ends the stream (shutdown); a dead connection raises
        DaemonNotRunning. Reconnect with the last event's id to get what was missed."""
        headers = {"last-event-id": last_event_id} if last_event_id else {}
        timeout = httpx.Timeout(EVENTS_READ_TIMEOUT, connect=5.0)
        with (
            self._mapped_errors(),
            self._http.stream("GET", "/v1/events", headers=headers, timeout=timeout) as response,
        ):
            self._check(response)
            for message in _sse_messages(response.iter_lines()):
                try:
                    data = json.loads(message.data)
                except ValueError:
                    raise errors.EngineFailure(f"the daemon sent a malformed event: {message.data!r:.80}") from None
                yield DaemonEvent(message.event, data if isinstance(data, dict) else {"value": data}, message.id)

    def wait_ready(
        self,
        timeout: float,
        on_progress: Callable[[api_status.DaemonStatus], None] | None = None,
        *,
        alive: Callable[[], bool] | None = None,
        interval: float = 0.2,
    ) -> api_status.DaemonStatus:
        """Poll ``/v1/status`` until the daemon is ready; ``on_progress`` sees each new state or progress text.

        Raises ModelLoadError if loading failed, DaemonNotRunning if ``alive()`` turns false or no
        daemon ever answered, and NotReady on timeout.
        """
        deadline = time.monotonic() + timeout
        last: tuple[str, str | None] | None = None
        status: api_status.DaemonStatus | None = None
        while True:
            with contextlib.suppress(errors.DaemonNotRunning, errors.ServiceUnavailable):
                status = self.status()
            if status is not None:
                if (status.state, status.load_progress) != last:
                    last = (status.state, status.load_progress)
                    if on_progress is not None:
                        on_progress(status)
                if status.state == "ready":
                    return status
                if status.state == "failed":
                    raise errors.ModelLoadError(status.error or "the daemon failed to load its model")
            if alive is not None and not alive():
                raise errors.DaemonNotRunning(f"the daemon for {self.where} exited before it was ready")
            if time.monotonic() >= deadline:
                if status is None:
                    raise errors.DaemonNotRunning(f"no trayllm daemon answered on {self.where} within {timeout:g} s")
                raise errors.NotReady(f"the daemon is still {status.state} after {timeout:g} s", retry_after=5.0)
            time.sleep(interval)


def _request_body(request: api.ChatCompletionRequest | Mapping[str, Any], *, stream: bool) -> dict[str, Any]:
    """Validate here, so a bad request fails before it leaves the process, and fix ``stream``."""
    try:
        parsed = (
            request
            if isinstance(request, api.ChatCompletionRequest)
            else api.ChatCompletionRequest.model_validate(dict(request))
        )
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise errors.InvalidRequest(f"invalid request: {where}: {first['msg']}", param=where or None) from None
    update: dict[str, Any] = {"stream": stream}
    if stream and parsed.stream_options is None:
        update["stream_options"] = api.StreamOptions(include_usage=True)
    return parsed.model_copy(update=update).model_dump(mode="json", exclude_none=True)
