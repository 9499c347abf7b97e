"""What every request passes through: request ids, TCP auth, the body cap, JSON depth, and typed errors as
OpenAI error bodies."""

from __future__ import annotations

import getpass
import json
import math
import re
import uuid
from array import array
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trayllm.api import ErrorBody, ErrorDetail
from trayllm.daemon.auth import check_tcp_request
from trayllm.errors import BodyTooLarge, InvalidRequest, RequestError

REQUEST_ID_HEADER = "x-request-id"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # for every text/event-stream
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes
_CONNECTION_CLOSE = (b"connection", b"close")


def new_request_id(offered: str | None) -> str:
    """Keep a well-formed id the client sent (so its traces line up), else make one."""
    if offered and _VALID_REQUEST_ID.match(offered):
        return offered
    return uuid.uuid4().hex


def error_body(error: RequestError) -> dict[str, Any]:
    detail = ErrorDetail(message=error.message, type=error.type, code=error.code, param=error.param)
    return ErrorBody(error=detail).model_dump(exclude_none=True)


def json_deeper_than(body: bytes, max_depth: int) -> bool:
    """Whether arrays and objects nest deeper than ``max_depth`` anywhere in ``body`` (brackets inside strings
    do not count). Checked before parsing because Python's parser recurses once per level and ends in a
    RecursionError (a 500) on deep input. Every step is a bytes method or itertools running in C, so the
    event loop is not held for long even at max_body_bytes.
    """
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False  # the common case: too few brackets to be that deep
    # Escapes pair up from the left, so with escaped backslashes and then escaped quotes gone, every
    # quote left opens or closes a string: the even pieces between quotes are what lies outside strings.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    steps = outside.translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return bool(steps) and max(accumulate(array("b", steps))) > max_depth


def json_object(body: bytes, *, max_depth: int, empty: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request body that must be one JSON object at most ``max_depth`` deep, or InvalidRequest naming the
    problem. An empty body is ``empty`` where the endpoint allows one (``POST /v1/pause`` with no reason), an
    error otherwise."""
    if not body.strip() and empty is not None:
        return empty
    if json_deeper_than(body, max_depth):
        raise InvalidRequest(
            f"the request body nests arrays and objects deeper than {max_depth} levels (max_json_depth)"
        )
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_not_json)
    except UnicodeDecodeError:
        raise InvalidRequest("the request body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise InvalidRequest(f"the request body is not valid JSON: {exc.msg} at {where}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(data):
        raise InvalidRequest(
            "the request body has a string with an unpaired UTF-16 surrogate (an escape like "
            "\\ud800 without its pair), which no text can hold"
        )
    return data


# json.loads turns "\ud800" alone into a str that cannot be encoded: the tokenizer, the record writer and
# the reply all fail on it later, far from the client's mistake. Only a body with such an escape is walked.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: object) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _not_json(constant: str) -> None:
    """NaN, Infinity and -Infinity: Python's json reads them, but they are not JSON and no field takes them."""
    raise InvalidRequest(f"the request body is not valid JSON: {constant} is not a JSON number")


def error_response(error: RequestError) -> JSONResponse:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return JSONResponse(error_body(error), status_code=error.status_code, headers=headers)


def is_unix(scope: Scope) -> bool:
    server = scope.get("server")
    return not server or server[1] is None


class CappedBody:
    """The request body as the app reads it, ending in BodyTooLarge past ``max_bytes``: at the first read when
    Content-Length already says so, else at the chunk that goes over. Nothing more is read after that, so an
    oversized body never sits in memory whole."""

    def __init__(self, receive: Receive, max_bytes: int, declared_length: str | None) -> None:
        self._receive = receive
        self.max_bytes = max_bytes
        self.received = 0
        self.over = declared_length is not None and int(declared_length) > max_bytes

    async def receive(self) -> Message:
        if not self.over:
            message = await self._receive()
            if message["type"] != "http.request":
                return message
            self.received += len(message.get("body", b""))
            self.over = self.received > self.max_bytes
            if not self.over:
                return message
        raise BodyTooLarge(f"the request body is larger than {self.max_bytes} bytes (max_body_bytes)")


class EdgeMiddleware:
    """Assign the request id, check TCP callers, cap the body, and stamp ``x-request-id`` on every response.

    A pure ASGI middleware (not BaseHTTPMiddleware) so streamed responses pass through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        max_body_bytes: int,
        error_response: Callable[[str, RequestError], Response],
    ) -> None:
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.error_response = error_response  # by the request's path: each API answers in its own shape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = new_request_id(headers.get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        scope["state"]["user"] = self._user(scope)
        body = CappedBody(receive, self.max_body_bytes, headers.get("content-length"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [h for h in message["headers"] if h[0].lower() != REQUEST_ID_HEADER.encode()]
                message["headers"].append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                if body.over:  # uvicorn would otherwise read the rest of the body to reuse the connection
                    message["headers"].append(_CONNECTION_CLOSE)
            await send(message)

        if not is_unix(scope):
            try:
                check_tcp_request(headers, self.token or "")
            except RequestError as error:
                await self.error_response(scope["path"], error)(scope, receive, send_with_id)
                return
        await self.app(scope, body.receive, send_with_id)

    @staticmethod
    def _user(scope: Scope) -> str:
        if is_unix(scope):
            client = scope.get("client")
            return str(client[0]) if client else "unknown"
        return getpass.getuser()  # the token file is the daemon user's own
