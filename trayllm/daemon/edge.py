"""What every response passes through: request ids, TCP auth, and typed errors as OpenAI error bodies."""

from __future__ import annotations

import getpass
import json
import math
import re
import uuid
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trayllm.api import ErrorBody, ErrorDetail
from trayllm.daemon.auth import check_tcp_request
from trayllm.errors import InvalidRequest, RequestError

REQUEST_ID_HEADER = "x-request-id"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # for every text/event-stream
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def new_request_id(offered: str | None) -> str:
    """Keep a well-formed id the client sent (so its traces line up), else make one."""
    if offered and _VALID_REQUEST_ID.match(offered):
        return offered
    return uuid.uuid4().hex


def error_body(error: RequestError) -> dict[str, Any]:
    detail = ErrorDetail(message=error.message, type=error.type, code=error.code, param=error.param)
    return ErrorBody(error=detail).model_dump(exclude_none=True)


def json_object(body: bytes, *, empty: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request body that must be one JSON object, or InvalidRequest naming the problem. An empty body is
    ``empty`` where the endpoint allows one (``POST /v1/pause`` with no reason), an error otherwise."""
    if not body.strip() and empty is not None:
        return empty
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequest("the request body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise InvalidRequest(f"the request body is not valid JSON: {exc.msg} at {where}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return data


def error_response(error: RequestError) -> JSONResponse:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return JSONResponse(error_body(error), status_code=error.status_code, headers=headers)


def is_unix(scope: Scope) -> bool:
    server = scope.get("server")
    return not server or server[1] is None


class EdgeMiddleware:
    """Assign the request id, check TCP callers, and stamp ``x-request-id`` on every response.

    A pure ASGI middleware (not BaseHTTPMiddleware) so streamed responses pass through untouched.
    """

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = new_request_id(headers.get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        scope["state"]["user"] = self._user(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [h for h in message["headers"] if h[0].lower() != REQUEST_ID_HEADER.encode()]
                message["headers"].append((REQUEST_ID_HEADER.encode(), request_id.encode()))
            await send(message)

        if not is_unix(scope):
            try:
                check_tcp_request(headers, self.token or "")
            except RequestError as error:
                await error_response(error)(scope, receive, send_with_id)
                return
        await self.app(scope, receive, send_with_id)

    @staticmethod
    def _user(scope: Scope) -> str:
        if is_unix(scope):
            client = scope.get("client")
            return str(client[0]) if client else "unknown"
        return getpass.getuser()  # the token file is the daemon user's own
