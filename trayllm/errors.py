"""Typed errors shared by the engine, the daemon and the clients.

Each class carries the HTTP status and OpenAI-style ``type``/``code`` it maps to, so the
daemon turns any of them into ``{"error": {...}}`` in one handler and the CLI turns any of
them into one line on stderr in one place. A ``RequestError`` also carries its request record's
``error.type`` (``record_type``) and whether it burns the SLO error budget (``burns_budget``):
this file is the one table of error kinds, and the record schema and the SLO objectives read it
(``record_error_types``). A subclass inherits both from its parent unless it says otherwise.

    TrayllmError
    ├── ConfigError               bad setting or config file (CLI only)
    ├── ModelLoadError            model missing or unloadable (CLI / daemon start)
    ├── DaemonAlreadyRunning      a second daemon on the same socket
    ├── DaemonNotRunning          a client found no daemon behind the socket
    ├── Untrusted                 a runtime dir, daemon or pid that is not the user's own
    ├── ElasticError              Elasticsearch or Kibana refused, failed or is incompatible (CLI)
    ├── HubError                  the model hub cannot be reached or refused, or a pull cannot start (CLI)
    │   └── HubNotFound           the hub has no such model, revision or file (POST /api/pull: 404)
    └── RequestError              anything a request can fail with (has an HTTP status)
        │                                 HTTP code                     record error.type  burns budget
        ├── InvalidRequest            400 invalid_request           invalid_request    no
        │   ├── ContextLengthExceeded 400 context_length_exceeded   invalid_request    no
        │   └── BodyTooLarge          413 request_too_large         invalid_request    no  (max_body_bytes)
        ├── Unauthorized              401 invalid_api_key           unauthorized       no
        ├── Forbidden                 403 forbidden                 forbidden          no
        ├── ModelNotFound             404 model_not_found           not_found          no
        ├── EndpointNotFound          404 not_found                 not_found          no
        ├── MethodNotAllowed          405 method_not_allowed        invalid_request    no
        ├── Conflict                  409 conflict                  invalid_request    no  (a reload running)
        ├── RateLimited               429 rate_limit_exceeded       rate_limited       no  (Retry-After)
        ├── ServiceUnavailable        503 unavailable               not_ready          yes (Retry-After)
        │   ├── QueueFull             503 queue_full                queue_full         yes
        │   ├── NotReady              503 model_loading             not_ready          yes
        │   ├── ShuttingDown          503 shutting_down             shutting_down      yes
        │   ├── Paused                503 paused                    paused             no  (the user's choice)
        │   ├── EngineOutOfMemory     503 oom                       oom                yes
        │   └── EngineUnreachable     503 engine_unreachable        engine_unreachable yes (remote engine down)
        ├── UpstreamRejected          400 upstream_rejected         upstream_rejected  no  (any 4xx: the upstream's)
        ├── RequestTimeout            504 timeout                   timeout            yes
        └── EngineFailure             500 engine_error              engine_error       yes (a bug, a broken model)

A request the client abandons ends with ``asyncio.CancelledError``, not a class here: its record type is
``CANCELLED``, which never burns the budget.
"""

from __future__ import annotations

CANCELLED = "cancelled"
"""The record ``error.type`` of a request the client abandoned (``asyncio.CancelledError``): not a failure of
the service, so it never burns the error budget."""


class TrayllmError(Exception):
    """Base of every error trayllm raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(TrayllmError):
    """A setting or the config file is wrong."""


class ModelLoadError(TrayllmError):
    """The configured model cannot be found or loaded."""


class DaemonAlreadyRunning(TrayllmError):
    """Another daemon holds the socket's lock."""


class DaemonNotRunning(TrayllmError):
    """No daemon answers on the socket."""


class DeviceLost(TrayllmError):
    """The GPU stopped running work for this process (a sticky CUDA error): only a new process can use it, so
    the daemon exits non-zero and its supervisor (systemd's Restart=on-failure) starts a fresh one."""


class Untrusted(TrayllmError):
    """A directory, daemon or process trayllm was about to rely on belongs to another user or is open to
    others (trayllm.trust); the message names it and the fix."""


class ElasticError(TrayllmError):
    """Elasticsearch or Kibana cannot be used: unreachable, refused our credentials, or an incompatible
    version. The message names the fix."""


class HubError(TrayllmError):
    """`trayllm pull` cannot go on: the hub is unreachable or refused, the repo holds nothing trayllm loads, or
    the disk lacks room. The message names the fix."""


class HubNotFound(HubError):
    """The hub has no model, revision or file by the name asked for: the asker's to fix, not the hub's."""


class RequestError(TrayllmError):
    """An error a single request ends with; maps to an HTTP status at the edge."""

    status_code = 500
    type = "server_error"
    code = "error"
    record_type = "engine_error"  # the request record's error.type (telemetry.schema.ERROR_TYPES)
    burns_budget = True  # counts against the error-rate SLO; False for the client's doing or the user's choice

    def __init__(self, message: str, *, param: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.retry_after = retry_after
        self.request_id: str | None = None  # set by the client from the response's x-request-id


class InvalidRequest(RequestError):
    """A body or field the request cannot be served with; ``param`` names the field when one is at fault."""

    status_code = 400
    type = "invalid_request_error"
    code = "invalid_request"
    record_type = "invalid_request"
    burns_budget = False


class ContextLengthExceeded(InvalidRequest):
    """The prompt and the reply budget do not fit the model's context together."""

    code = "context_length_exceeded"


class BodyTooLarge(InvalidRequest):
    """The request body is over ``max_body_bytes``; the rest of it is never read."""

    status_code = 413
    code = "request_too_large"


class Unauthorized(RequestError):
    """A TCP request without the right bearer token."""

    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"
    record_type = "unauthorized"
    burns_budget = False


class Forbidden(RequestError):
    """A TCP request whose Host or Origin is not a loopback name (the DNS-rebinding guard)."""

    status_code = 403
    type = "permission_error"
    code = "forbidden"
    record_type = "forbidden"
    burns_budget = False


class ModelNotFound(RequestError):
    """The ``model`` asked for is not served here; the message lists what is."""

    status_code = 404
    type = "invalid_request_error"
    code = "model_not_found"
    record_type = "not_found"
    burns_budget = False


class EndpointNotFound(RequestError):
    """No such route (``/v1/faults`` too while fault injection is off)."""

    status_code = 404
    type = "invalid_request_error"
    code = "not_found"
    record_type = "not_found"
    burns_budget = False


class MethodNotAllowed(RequestError):
    """The route exists, not with this method."""

    status_code = 405
    type = "invalid_request_error"
    code = "method_not_allowed"
    record_type = "invalid_request"
    burns_budget = False


class Conflict(RequestError):
    """A reload, or an Ollama pull, asked for while one is already under way."""

    status_code = 409
    type = "invalid_request_error"
    code = "conflict"
    record_type = "invalid_request"
    burns_budget = False


class RateLimited(RequestError):
    """The caller's requests per minute (``rate_limit_per_minute``) are used up; ``Retry-After`` says when more are."""

    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    record_type = "rate_limited"
    burns_budget = False


class ServiceUnavailable(RequestError):
    """The daemon cannot serve now; ``Retry-After`` says when to try again."""

    status_code = 503
    type = "service_unavailable"
    code = "unavailable"
    record_type = "not_ready"  # a bare 503 that no subclass describes: the daemon could not serve


class QueueFull(ServiceUnavailable):
    """Every queue place (``queue_size``) is taken."""

    code = "queue_full"
    record_type = "queue_full"  # the daemon had no capacity


class NotReady(ServiceUnavailable):
    """The model is still loading or warming up."""

    code = "model_loading"


class ShuttingDown(ServiceUnavailable):
    """The daemon is stopping and takes no new requests."""

    code = "shutting_down"
    record_type = "shutting_down"


class Paused(ServiceUnavailable):
    """Serving is paused (``trayllm pause``) until resumed."""

    code = "paused"
    record_type = "paused"
    burns_budget = False  # the user chose to stop serving


class EngineOutOfMemory(ServiceUnavailable):
    """The device ran out of memory while serving this request."""

    code = "oom"
    record_type = "oom"


class EngineUnreachable(ServiceUnavailable):
    """The remote engine's server could not be reached, or answered with a 5xx."""

    code = "engine_unreachable"
    record_type = "engine_unreachable"


class UpstreamRejected(RequestError):
    """The remote engine's server refused the request with a 4xx: passed on with its status, type and code."""

    status_code = 400
    type = "invalid_request_error"
    code = "upstream_rejected"
    record_type = "upstream_rejected"
    burns_budget = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 400,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, param=param, retry_after=retry_after)
        self.status_code = status_code
        self.type = type or self.type
        self.code = code or self.code


class RequestTimeout(RequestError):
    """The request waited or ran longer than ``request_timeout_s``."""

    status_code = 504
    type = "timeout_error"
    code = "timeout"
    record_type = "timeout"


class EngineFailure(RequestError):
    """The engine failed the request; never the client's doing."""

    status_code = 500
    type = "server_error"
    code = "engine_error"


def request_error_classes(base: type[RequestError] = RequestError) -> list[type[RequestError]]:
    """Every subclass of ``base``, parents before children, so that code mapping error kinds (records, the
    SLO, the client) picks up a class added here without an edit of its own."""
    found: list[type[RequestError]] = []
    for cls in base.__subclasses__():
        found += [cls, *request_error_classes(cls)]
    return found


def record_error_types() -> dict[str, bool]:
    """Every ``error.type`` a request record may carry, mapped to whether it burns the error budget.

    Read by the record schema (the allowed values) and the SLO objectives (which failures count), which see
    only the ``error.type`` string; classes that share a record type must agree on ``burns_budget``
    (tests/test_errors.py holds them to it)."""
    classes: list[type[RequestError]] = [RequestError, *request_error_classes()]
    table = {cls.record_type: cls.burns_budget for cls in classes}
    table[CANCELLED] = False
    return table
