"""The endpoints the tray and `trayllm` use to watch and steer the daemon.

``GET /v1/events`` (SSE), ``GET /v1/slo``, ``POST /v1/pause`` (optional ``{"reason": "..."}``),
``POST /v1/resume``, ``POST /v1/reload`` (optional ``{"model": "..."}`` to switch models; 202: the reload
runs in the background and ends with a ``model.loaded`` or ``model.failed`` event), and, only with
``fault_injection`` on, ``GET/PUT/DELETE /v1/faults``. Over TCP they need the bearer token like every other endpoint.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from trayllm.api import ReloadRequest
from trayllm.api_status import SloReport
from trayllm.config import Settings
from trayllm.daemon.alerting import AlertCenter
from trayllm.daemon.edge import SSE_HEADERS, json_object
from trayllm.daemon.events import EventBus
from trayllm.engine.faults import Faults
from trayllm.engine.interface import ServingEngine
from trayllm.errors import EndpointNotFound, InvalidRequest, ModelLoadError
from trayllm.slo.report import to_wire

MAX_REASON = 200


class ControlHandlers:
    def __init__(
        self,
        engine: ServingEngine,
        settings: Settings,
        bus: EventBus,
        alerts: AlertCenter,
        hello: Callable[[], dict[str, Any]],
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.bus = bus
        self.alerts = alerts
        self.hello = hello
        self.keepalive_s = 15.0

    async def events(self, request: Request) -> Response:
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        return StreamingResponse(
            self.bus.stream(last, self.hello, self.keepalive_s), media_type="text/event-stream", headers=SSE_HEADERS
        )

    def slo_report(self) -> SloReport:
        now = time.time()
        rows = [to_wire(row) for row in self.alerts.monitor.report(now)]
        return SloReport(at=now, objectives=rows, alerts=self.alerts.monitor.states())

    async def slo(self, _: Request) -> Response:
        return JSONResponse(self.slo_report().model_dump())

    async def pause(self, request: Request) -> Response:
        body = json_object(await request.body(), max_depth=self.settings.max_json_depth, empty={})
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
            raise InvalidRequest(f"reason must be a string of at most {MAX_REASON} characters", param="reason")
        self.engine.pause(reason or None)
        return JSONResponse({"paused": self.engine.paused})

    async def resume(self, _: Request) -> Response:
        self.engine.resume()
        return JSONResponse({"paused": None})

    async def reload(self, request: Request) -> Response:
        """202 once the reload runs; a switch (``{"model": ...}``) that cannot work is a 400 naming why, and the
        model serving now keeps serving. The check reads files, so it runs off the event loop."""
        body = json_object(await request.body(), max_depth=self.settings.max_json_depth, empty={})
        try:
            model = ReloadRequest.model_validate(body).model
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or None
            raise InvalidRequest(f"bad reload request: {where}: {first['msg']}", param=where) from None
        try:
            await asyncio.to_thread(self.engine.reload, model)
        except ModelLoadError as exc:
            raise InvalidRequest(
                f"cannot switch to {model or 'the embedded model'}: {exc.message}; the current model keeps serving",
                param="model",
            ) from None
        return JSONResponse({"state": self.engine.state}, status_code=202)

    async def faults(self, request: Request) -> Response:
        if not self.settings.fault_injection:
            raise EndpointNotFound(
                "fault injection is off; start the daemon with fault_injection = true "
                "(TRAYLLM_FAULT_INJECTION=1) to use /v1/faults"
            )
        if request.method == "PUT":
            plan = json_object(await request.body(), max_depth=self.settings.max_json_depth)
            try:
                self.engine.faults.set(Faults.from_json(plan))
            except ValueError as exc:
                raise InvalidRequest(f"bad fault plan: {exc}") from None
        elif request.method == "DELETE":
            self.engine.faults.set(Faults())
        return JSONResponse(self.engine.faults.current)
