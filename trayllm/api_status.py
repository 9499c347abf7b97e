"""Wire types of the daemon's state: /v1/status, /v1/slo and /v1/events' alerts, read by the CLI, the tray and the
chat window. Kept apart from the request and reply types of trayllm.api; no torch, no engine imports."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class ModelStatus(BaseModel):
    """The loaded model in /v1/status: validated from the engine's ``ModelInfo`` (trayllm.engine.types), field
    for field (tests/daemon/test_status.py keeps the two in step)."""

    name: str
    version: str
    source: str
    device: str
    dtype: str
    quantization: str
    context_length: int
    device_index: int | None = None
    memory_total_bytes: int | None = None
    device_uuid: str | None = None  # NVML's name for that device; its NVML index may differ from device_index
    engine: str = "local"  # the engine that serves it ("local", "remote", or its [[engines]] name)
    engine_url: str | None = None  # a remote engine's upstream base URL


class QueueStatus(BaseModel):
    depth: int
    capacity: int
    in_flight: int
    max_batch: int
    backlog_cap_active: bool
    backlog_max_tokens: int
    vram_blocked: bool = False  # the next request waits until running ones free VRAM


class SloRow(BaseModel):
    """One objective judged now (``trayllm slo``; also inside /v1/status)."""

    objective: str
    window_s: float
    value: float | None
    threshold: float
    state: str  # ok | breach | insufficient
    budget_left: float | None
    samples: int
    unit: str = ""


class SloReport(BaseModel):
    """GET /v1/slo: the objectives at one moment, and every alert's state."""

    at: float  # Unix seconds the report was taken at (``trayllm slo --from FILE --at`` reproduces it)
    objectives: list[SloRow]
    alerts: dict[str, Literal["ok", "firing", "resolved"]]


class Alert(BaseModel):
    """An alert transition, as /v1/events data and in /v1/status's list of firing alerts."""

    key: str
    state: Literal["firing", "resolved"]
    severity: Literal["critical", "warning"]
    message: str
    value: float | None = None
    threshold: float | None = None
    at: float
    id: str | None = None  # the event id (also the alert record's event.id)
    details: dict[str, Any] | None = None


class RequestCounters(BaseModel):
    """The engine's ``Counters`` (trayllm.engine.handle), field for field."""

    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    rejected: int = 0
    tokens_in: int = 0
    tokens_out: int = 0


class Memory(BaseModel):
    used_bytes: int
    total_bytes: int


class ShippingStatus(BaseModel):
    """Shipping to Elasticsearch, when ``es_url`` is set: ``elastic.shipper.ShipperStats``, field for field."""

    state: str
    delivered: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    unreadable: int = 0  # of those dead-lettered: lines torn by a crash, or damaged
    retries: int = 0
    backlog_bytes: int = 0
    last_error: str | None = None
    last_delivery: float | None = None


EngineState = Literal["loading", "warming", "ready", "failed", "reloading", "draining"]
"""Where the engine is in its life (``Engine.state``), as /v1/status and /v1/events report it. Defined here, with
the wire types, so that clients read it without importing the engine package."""


class EngineStatus(BaseModel):
    """One engine the daemon serves from (``[[engines]]``, or the one of the ``engine_*`` settings)."""

    name: str
    default: bool = False  # the engine a request without a ``model`` goes to
    state: EngineState
    paused: str | None = None
    model: str | None = None  # the name clients send as ``model``; None until it is known
    version: str | None = None
    url: str | None = None  # a remote engine's upstream base URL
    reachable: bool | None = None  # a remote engine's upstream answered its last probe or request
    queue_depth: int = 0
    in_flight: int = 0

    def line(self) -> str:
        """One line naming it and how it is, for `trayllm status` and the tray's tooltip."""
        words = [f"{self.name}{' (default)' if self.default else ''}: {self.model or 'no model yet'}", self.state]
        if self.url:
            words.append(f"at {self.url}" + (" (unreachable)" if self.reachable is False else ""))
        if self.paused:
            words.append("paused")
        return " · ".join(words)


class DaemonStatus(BaseModel):
    """GET /v1/status: everything a tray tooltip or `trayllm status` shows (built by daemon.app.daemon_status)."""

    state: EngineState
    paused: str | None = None  # the reason, while new requests are refused
    model: ModelStatus | None
    load_progress: str | None = None
    error: str | None = None
    vram: Memory | None = None
    queue: QueueStatus
    requests: RequestCounters
    uptime_s: float
    pid: int
    version: str
    boot_id: str | None = None  # changes when the daemon restarts (the /v1/events id prefix)
    slo: list[SloRow] = []
    alerts: list[Alert] = []  # firing now
    shipping: ShippingStatus | None = None
    engines: list[EngineStatus] = []  # every engine; the fields above are the default one's
