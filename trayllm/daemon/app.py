"""Starlette app factory: the routes of DESIGN.md's API, each one line that delegates."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trayllm import __version__
from trayllm.api import ModelCard, ModelList
from trayllm.api_status import (
    DaemonStatus,
    EngineStatus,
    Memory,
    ModelStatus,
    QueueStatus,
    RequestCounters,
    ShippingStatus,
)
from trayllm.config import Settings
from trayllm.daemon.alerting import AlertCenter
from trayllm.daemon.chat import ChatCompletionHandler
from trayllm.daemon.completions import CompletionHandler
from trayllm.daemon.control import ControlHandlers
from trayllm.daemon.edge import EdgeMiddleware
from trayllm.daemon.engines import EngineSet, Member
from trayllm.daemon.events import EventBus
from trayllm.daemon.generation import Generator
from trayllm.daemon.ollama import OllamaGeneration, error_response_for
from trayllm.daemon.ollama_info import OllamaInfo
from trayllm.daemon.ollama_pull import OllamaPull
from trayllm.daemon.records import RequestRecorder
from trayllm.engine.interface import ServingEngine
from trayllm.errors import EndpointNotFound, MethodNotAllowed, ModelNotFound, RequestError

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def engine_status(member: Member, default: bool) -> EngineStatus:
    engine, info = member.engine, member.info
    return EngineStatus(
        name=member.name,
        default=default,
        state=engine.state,
        paused=engine.paused,
        model=None if info is None else info.name,
        version=None if info is None else info.version,
        url=member.url,
        reachable=member.reachable,
        queue_depth=engine.queue_depth,
        in_flight=engine.in_flight,
    )


def daemon_status(
    engine: ServingEngine | EngineSet,
    settings: Settings,
    control: ControlHandlers,
    shipping: Callable[[], dict[str, Any]] | None = None,
) -> DaemonStatus:
    """The one place the engine's own types become /v1/status's: each wire type validates from its engine twin
    (``from_attributes``), so a field kept in step there (tests/daemon/test_status.py) needs no edit here. The
    top-level fields are the default engine's (its counts the sum of all); ``engines`` lists each."""
    info = engine.info
    memory = engine.memory()
    engines = EngineSet.of(engine)
    return DaemonStatus(
        state=engine.state,
        paused=engine.paused,
        model=None if info is None else ModelStatus.model_validate(info, from_attributes=True),
        load_progress=engine.progress,
        error=engine.error,
        vram=None if memory is None else Memory(used_bytes=memory[0], total_bytes=memory[1]),
        queue=QueueStatus(
            depth=engine.queue_depth,
            capacity=settings.queue_size,
            in_flight=engine.in_flight,
            max_batch=settings.max_batch,
            backlog_cap_active=engine.backlogged,
            backlog_max_tokens=settings.backlog_max_tokens,
            vram_blocked=engine.vram_blocked,
        ),
        requests=RequestCounters.model_validate(engine.counters, from_attributes=True),
        uptime_s=round(time.monotonic() - engine.started_at, 3),
        pid=os.getpid(),
        version=__version__,
        boot_id=control.bus.boot_id,
        slo=control.slo_report().objectives,
        alerts=control.alerts.firing(),
        shipping=None if shipping is None else ShippingStatus.model_validate(shipping()),
        engines=[engine_status(member, member is engines.default) for member in engines.members],
    )


def build_app(
    served: ServingEngine | EngineSet,
    settings: Settings,
    recorder: RequestRecorder,
    bus: EventBus,
    alerts: AlertCenter,
    *,
    token: str | None = None,
    shipping: Callable[[], dict[str, Any]] | None = None,
) -> Starlette:
    engine = EngineSet.of(served)
    generator = Generator(engine, recorder)
    chat = ChatCompletionHandler(generator)
    completions = CompletionHandler(generator)
    started = int(time.time())

    def hello() -> dict[str, object]:
        """The snapshot a new /v1/events subscriber starts from."""
        info = engine.info
        return {
            "state": engine.state,
            "paused": engine.paused,
            "model": info.name if info else None,
            "version": info.version if info else None,
            "pid": os.getpid(),
            "alerts": [a.model_dump() for a in alerts.firing()],
        }

    control = ControlHandlers(engine, settings, bus, alerts, hello)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        engine.require_loaded()
        return JSONResponse({"status": "ready"})

    def served_models() -> list[ModelCard]:
        """A card for every engine's model, ``engine`` naming the engine that serves it; NotReady while the
        default engine has none."""
        engine.require_loaded()
        return [
            ModelCard(
                id=info.name,
                created=started,
                engine=info.engine,
                version=info.version,
                context_length=info.context_length,
            )
            for info in engine.served()
        ]

    async def models(_: Request) -> Response:
        return JSONResponse(ModelList(data=served_models()).model_dump())

    async def model(request: Request) -> Response:
        """GET /v1/models/{id}: the OpenAI SDK's ``models.retrieve``; 404 in OpenAI's shape for another id."""
        cards, wanted = served_models(), request.path_params["model_id"]
        card = next((card for card in cards if card.id == wanted), None)
        if card is None:
            served = ", ".join(repr(card.id) for card in cards)
            raise ModelNotFound(f"model {wanted!r} is not served here; this daemon serves {served}", param="model")
        return JSONResponse(card.model_dump())

    async def status(_: Request) -> Response:
        return JSONResponse(daemon_status(engine, settings, control, shipping).model_dump())

    async def metrics(_: Request) -> Response:
        memory = engine.memory()
        recorder.metrics.set_state(
            waiting=engine.queue_depth,
            running=engine.in_flight,
            loaded=engine.state in ("ready", "draining"),
            vram_used=None if memory is None else memory[0],
            vram_total=None if memory is None else memory[1],
        )
        return Response(recorder.metrics.render(), media_type=PROMETHEUS_TEXT)

    async def on_request_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestError)
        return error_response_for(request.url.path, exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 405:
            return error_response_for(request.url.path, MethodNotAllowed(f"{where} is not allowed"))
        return error_response_for(request.url.path, EndpointNotFound(f"no such endpoint: {where}"))

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/v1/models", models),
        Route("/v1/models/{model_id:path}", model),
        Route("/v1/status", status),
        Route("/metrics", metrics),
        Route("/v1/chat/completions", chat.handle, methods=["POST"]),
        Route("/v1/completions", completions.handle, methods=["POST"]),
        Route("/v1/events", control.events),
        Route("/v1/slo", control.slo),
        Route("/v1/pause", control.pause, methods=["POST"]),
        Route("/v1/resume", control.resume, methods=["POST"]),
        Route("/v1/reload", control.reload, methods=["POST"]),
        Route("/v1/faults", control.faults, methods=["GET", "PUT", "DELETE"]),
        *OllamaGeneration(generator).routes(),
        *OllamaInfo(engine, settings, started).routes(),
        *OllamaPull(settings).routes(),
    ]
    edge = Middleware(
        EdgeMiddleware, token=token, max_body_bytes=settings.max_body_bytes, error_response=error_response_for
    )
    return Starlette(
        routes=routes,
        middleware=[edge],
        exception_handlers={RequestError: on_request_error, HTTPException: on_http_error},
    )
