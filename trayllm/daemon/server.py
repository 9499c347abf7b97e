"""The daemon's composition root: lock, sockets, engine, app, uvicorn, and a clean shutdown.

SIGTERM (or SIGINT) first makes the engine refuse new requests, then uvicorn stops
listening and lets in-flight responses finish for ``shutdown_grace_s``; whatever is still
running after that is cancelled, and the socket is removed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from types import FrameType

import uvicorn

from trayllm.config import Settings, config_file
from trayllm.config_engines import load_engines
from trayllm.daemon.alerting import AlertCenter
from trayllm.daemon.app import build_app
from trayllm.daemon.auth import ensure_token
from trayllm.daemon.connections import ACCEPT_BURST, ConnectionLimits, GuardedProtocol, raise_open_file_limit
from trayllm.daemon.engines import open_engines
from trayllm.daemon.events import EventBus
from trayllm.daemon.records import RequestRecorder
from trayllm.daemon.shipping import ShippingThread
from trayllm.daemon.sockets import InstanceLock, bind_tcp, bind_unix
from trayllm.engine.interface import ServingEngine
from trayllm.errors import DeviceLost
from trayllm.slo.monitor import SloMonitor
from trayllm.slo.objectives import configured_objectives
from trayllm.telemetry.log_format import EcsJsonFormatter
from trayllm.telemetry.metrics import DaemonMetrics
from trayllm.telemetry.vram import NvmlProbe

log = logging.getLogger("trayllm.daemon")


class DrainingServer(uvicorn.Server):
    """uvicorn.Server that tells the engine to refuse new work the moment a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, engine: ServingEngine, bus: EventBus) -> None:
        super().__init__(config)
        self.engine = engine
        self.bus = bus
        self.lost_device: str | None = None
        engine.on_fatal = self.stop_for_lost_device

    def stop_for_lost_device(self, reason: str) -> None:
        """Any thread: the GPU is lost, so stop serving; ``run_daemon`` then exits non-zero (DeviceLost)."""
        self.lost_device = reason
        self.bus.close()
        self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn re-raises the stop signal after shutdown; a drained daemon exits 0 instead."""
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            log.info("stop signal %s: draining in-flight requests", signal.Signals(sig).name)
            self.engine.begin_drain()  # publishes daemon.shutting_down
            self.bus.close()  # ends the event streams, which uvicorn would otherwise wait on
        super().handle_exit(sig, frame)


def configure_logging(level: str) -> None:
    """Every line the daemon writes to stderr is one ECS JSON object, whoever logs it (Python's warnings too;
    transformers, where a load imports it, is routed here by the engine: engine.models)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EcsJsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    for noisy in ("uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_daemon(settings: Settings) -> None:
    """Serve until a stop signal; raises DaemonAlreadyRunning or ModelLoadError before serving, DeviceLost after
    serving when the GPU stopped working."""
    specs = load_engines(config_file())
    configure_logging(settings.log_level)
    open_files = raise_open_file_limit()
    engine = open_engines(settings, specs)  # a missing model is a one-line error now, not a failed load later
    lock = InstanceLock(settings.lock_path)
    lock.acquire(settings.socket_path)
    sockets: list[socket.socket] = []
    try:
        sockets.append(bind_unix(settings.socket_path))
        token = None
        if settings.listen:
            token = ensure_token(settings.token_path)
            sockets.append(bind_tcp(settings.listen))
        recorder = RequestRecorder(settings, DaemonMetrics(), NvmlProbe(), lambda: engine.info)
        bus = EventBus(settings.events_buffer)
        monitor = SloMonitor(
            configured_objectives(settings),
            margin=settings.alert_margin,
            hold_s=settings.alert_hold_s,
            oom_quiet_s=settings.oom_quiet_s,
        )
        alerts = AlertCenter(settings, bus, monitor, lambda: engine.info)
        recorder.observers.append(alerts.observe)
        engine.on_oom = alerts.oom
        engine.watch_reachability(alerts.engine_reachability)
        engine.on_event = bus.publish
        shipping = ShippingThread(settings, engine) if settings.es_url else None
        if shipping is not None:
            recorder.observers.append(shipping.observe)
        alerts.start()
        engine.start()
        if shipping is not None:
            shipping.start()
        app = build_app(
            engine,
            settings,
            recorder,
            bus,
            alerts,
            token=token,
            shipping=shipping.stats if shipping is not None else None,
        )
        limits = ConnectionLimits(settings.header_timeout_s, settings.max_tcp_connections, open_files)
        config = uvicorn.Config(
            app,
            http=functools.partial(GuardedProtocol, limits=limits),  # type: ignore[arg-type]  # a protocol class
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,  # a client must not name its own user with X-Forwarded-For
            timeout_keep_alive=settings.keep_alive_timeout_s,  # type: ignore[arg-type]  # uvicorn takes a float
            backlog=ACCEPT_BURST,
            timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
        )
        log.info("listening", extra={"socket": str(settings.socket_path), "tcp": settings.listen or None})
        server = DrainingServer(config, engine, bus)
        try:
            server.run(sockets=sockets)
            if server.lost_device is not None:
                raise DeviceLost(f"{server.lost_device}; exiting so that a fresh process can use the GPU")
        finally:
            engine.stop()
            recorder.close()  # after the engine, so the records of cancelled leftovers are written
            alerts.close()
            if shipping is not None:
                shipping.stop()  # what it did not ship yet, the next start (or `trayllm ship`) ships
    finally:
        for sock in sockets:
            sock.close()
        if settings.socket_path.is_socket():
            settings.socket_path.unlink()
        lock.release()
        log.info("stopped")
