"""Typed errors shared by the engine, the daemon and the clients.

Each class carries the HTTP status and OpenAI-style ``type``/``code`` it maps to, so the
daemon turns any of them into ``{"error": {...}}`` in one handler and the CLI turns any of
them into one line on stderr in one place.

    TrayllmError
    ├── ConfigError               bad setting or config file (CLI only)
    ├── ModelLoadError            model missing or unloadable (CLI / daemon start)
    ├── DaemonAlreadyRunning      a second daemon on the same socket
    ├── DaemonNotRunning          a client found no daemon behind the socket
    ├── Untrusted                 a runtime dir, daemon or pid that is not the user's own
    ├── ElasticError              Elasticsearch or Kibana refused, failed or is incompatible (CLI)
    └── RequestError              anything a request can fail with (has an HTTP status)
        ├── InvalidRequest            400 invalid_request_error
        │   ├── ContextLengthExceeded 400 context_length_exceeded
        │   └── BodyTooLarge          413 request_too_large (max_body_bytes)
        ├── Unauthorized              401
        ├── Forbidden                 403
        ├── ModelNotFound             404 model_not_found
        ├── EndpointNotFound          404 not_found
        ├── MethodNotAllowed          405 method_not_allowed
        ├── Conflict                  409 conflict (e.g. a reload while one runs)
        ├── RateLimited               429 rate_limit_exceeded (Retry-After)
        ├── ServiceUnavailable        503 (Retry-After)
        │   ├── QueueFull             503 queue_full
        │   ├── NotReady              503 model_loading
        │   ├── ShuttingDown          503 shutting_down
        │   ├── Paused                503 paused (the user paused serving)
        │   └── EngineOutOfMemory     503 oom
        ├── RequestTimeout            504 timeout
        └── EngineFailure             500 engine_error (a bug or a broken model, never bad input)
"""

from __future__ import annotations


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


class RequestError(TrayllmError):
    """An error a single request ends with; maps to an HTTP status at the edge."""

    status_code = 500
    type = "server_error"
    code = "error"

    def __init__(self, message: str, *, param: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.retry_after = retry_after
        self.request_id: str | None = None  # set by the client from the response's x-request-id


class InvalidRequest(RequestError):
    status_code = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class BodyTooLarge(InvalidRequest):
    """The request body is over ``max_body_bytes``; the rest of it is never read."""

    status_code = 413
    code = "request_too_large"


class Unauthorized(RequestError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(RequestError):
    status_code = 403
    type = "permission_error"
    code = "forbidden"


class ModelNotFound(RequestError):
    status_code = 404
    type = "invalid_request_error"
    code = "model_not_found"


class EndpointNotFound(RequestError):
    status_code = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(RequestError):
    status_code = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class Conflict(RequestError):
    status_code = 409
    type = "invalid_request_error"
    code = "conflict"


class RateLimited(RequestError):
    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class ServiceUnavailable(RequestError):
    status_code = 503
    type = "service_unavailable"
    code = "unavailable"


class QueueFull(ServiceUnavailable):
    code = "queue_full"


class NotReady(ServiceUnavailable):
    code = "model_loading"


class ShuttingDown(ServiceUnavailable):
    code = "shutting_down"


class Paused(ServiceUnavailable):
    code = "paused"


class EngineOutOfMemory(ServiceUnavailable):
    code = "oom"


class RequestTimeout(RequestError):
    status_code = 504
    type = "timeout_error"
    code = "timeout"


class EngineFailure(RequestError):
    status_code = 500
    type = "server_error"
    code = "engine_error"
