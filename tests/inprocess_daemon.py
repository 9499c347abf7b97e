"""The daemon's real app on a FakeEngine, served by uvicorn on its Unix socket from a thread of the test process.

Routes, edge middleware, request records, /metrics, events and alerts are the daemon's own, wired as
``trayllm.daemon.server.run_daemon`` wires them; only the engine is fake (tests/fake_engine.py), or a
RemoteEngine in front of another such daemon (``serve_engine(..., tcp=True)`` serves that one on loopback TCP
with a bearer token, as ``listen`` does). Starting one takes milliseconds, so the daemon's HTTP behaviour is
tested without loading a model or spawning a process.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from fake_daemon import serve
from fake_engine import FakeEngine
from waiting import wait_for

from trayllm.config import Settings, load_settings
from trayllm.daemon.alerting import AlertCenter
from trayllm.daemon.app import build_app
from trayllm.daemon.auth import ensure_token
from trayllm.daemon.engines import EngineSet
from trayllm.daemon.events import EventBus
from trayllm.daemon.records import RequestRecorder
from trayllm.daemon.sockets import PeerCredProtocol, bind_tcp, bind_unix
from trayllm.engine.interface import ServingEngine
from trayllm.slo.monitor import SloMonitor
from trayllm.slo.objectives import configured_objectives
from trayllm.telemetry.metrics import DaemonMetrics
from trayllm.telemetry.vram import NvmlProbe


class InProcessDaemon:
    """One served app; ``engine`` is its engine (a FakeEngine, for the test to script)."""

    def __init__(self, settings: Settings, engine: Any, token: str | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.socket = settings.socket_path
        self.recorder = RequestRecorder(settings, DaemonMetrics(), NvmlProbe(), lambda: engine.info)
        self.bus = EventBus(settings.events_buffer)
        monitor = SloMonitor(
            configured_objectives(settings),
            margin=settings.alert_margin,
            hold_s=settings.alert_hold_s,
            oom_quiet_s=settings.oom_quiet_s,
        )
        self.alerts = AlertCenter(settings, self.bus, monitor, lambda: engine.info)
        self.recorder.observers.append(self.alerts.observe)
        engine.on_oom = self.alerts.oom
        engine.on_event = self.bus.publish
        EngineSet.of(engine).watch_reachability(self.alerts.engine_reachability)
        self.token = token
        self.app = build_app(engine, settings, self.recorder, self.bus, self.alerts, token=token)

    @property
    def records(self) -> Path:
        return self.settings.records_path

    def wait_records(self, count: int) -> list[dict[str, Any]]:
        """The request records written so far, once there are at least ``count`` of them (records are written
        after the reply ends, so a test that has its reply may still be early)."""

        def read() -> list[dict[str, Any]] | None:
            lines = self.records.read_text().splitlines() if self.records.exists() else []
            return [json.loads(line) for line in lines] if len(lines) >= count else None

        return wait_for(read)  # type: ignore[no-any-return]

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://trayllm", timeout=timeout
        )

    def status(self) -> dict[str, Any]:
        with self.client() as client:
            return client.get("/v1/status").json()


def free_port() -> int:
    """A loopback TCP port free now, for a daemon's ``listen``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serve_fake(**overrides: Any) -> Iterator[InProcessDaemon]:
    """An InProcessDaemon on a FakeEngine with these settings (their names as in the config file) until the block
    ends."""
    with serve_engine(FakeEngine, **overrides) as daemon:
        yield daemon


@contextlib.contextmanager
def serve_engine(
    engine_of: Callable[[Settings], ServingEngine | EngineSet],
    *,
    tcp: bool = False,
    app_wrapper: Any = None,
    **overrides: Any,
) -> Iterator[InProcessDaemon]:
    """An InProcessDaemon on ``engine_of(settings)``: on its Unix socket, or with ``tcp`` on its ``listen``
    address with its bearer token (``app_wrapper`` may put the app behind routes of the test's own)."""
    settings = load_settings(overrides)
    token = ensure_token(settings.token_path) if tcp else None
    daemon = InProcessDaemon(settings, engine_of(settings), token)
    daemon.alerts.start()
    daemon.engine.start()
    sock = bind_tcp(settings.listen) if tcp else bind_unix(settings.socket_path)
    app = daemon.app if app_wrapper is None else app_wrapper(daemon.app)
    try:
        with serve(app, fd=sock.fileno(), **({} if tcp else {"http": PeerCredProtocol})):
            try:
                yield daemon
            finally:
                daemon.bus.close()  # event streams end, so uvicorn need not wait for them
    finally:
        sock.close()
        daemon.engine.stop()
        daemon.recorder.close()
        daemon.alerts.close()
