"""Where alerts come from and where they go: records and OOMs in, events and alert records out.

``AlertCenter`` feeds every request record to the ``SloMonitor`` and judges the objectives every
``slo_eval_interval_s`` on its own thread; each transition is published on the ``EventBus`` (so the tray
hears of it at once) and written to ``alerts.jsonl`` (the ``trayllm.alerts`` stream) under the same id.
An OOM skips the wait: the engine's report becomes a "firing" event on the spot.

At start the windows are refilled from the record file (rotated files included) on that same thread, so a
restart forgets nothing and serving does not wait for the read; lines a crash tore are skipped, and their
count is in the "SLO windows refilled" log line. Records finished meanwhile are held back and added after
the refill unless the file already had them (by request id). Alert states are restored from
``alerts.jsonl``, so an alert firing before the restart is not announced a second time.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from trayllm.api_status import Alert
from trayllm.config import Settings
from trayllm.daemon.events import EventBus
from trayllm.engine.types import ModelInfo, OomReport
from trayllm.slo.alerts import AlertEvent
from trayllm.slo.monitor import ENGINE_UNREACHABLE, SloMonitor, severity_of
from trayllm.slo.objectives import field_value
from trayllm.slo.report import record_end_time
from trayllm.telemetry.alert_record import alert_document
from trayllm.telemetry.reader import ReadStats, iter_records
from trayllm.telemetry.writer import RecordWriter

log = logging.getLogger(__name__)

RESTART_OVERLAP_S = 60.0  # records ending this long before start may also be observed live (clock skew)


def _oom_details(report: OomReport) -> dict[str, Any]:
    """The OOM forensics as alert-record fields (absent readings left out)."""
    return {
        "llm.alert.request_ids": list(report.request_ids),
        "llm.oom.phase": report.phase,
        "llm.oom.batch_size": len(report.request_ids),
        "llm.oom.prompt_tokens": report.prompt_tokens,
        "llm.oom.max_tokens": report.max_tokens,
        "llm.oom.retried": report.retried,
        "llm.vram.allocated.bytes": report.allocated_bytes,
        "llm.vram.reserved.bytes": report.reserved_bytes,
        "llm.vram.total.bytes": report.total_bytes,
    }


class AlertCenter:
    def __init__(
        self, settings: Settings, bus: EventBus, monitor: SloMonitor, model_info: Callable[[], ModelInfo | None]
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.monitor = monitor
        self.model_info = model_info
        self.host = socket.gethostname()
        self.writer = (
            RecordWriter(settings.alerts_path, settings.records_max_bytes, settings.records_backups)
            if settings.telemetry
            else None
        )
        self._lock = threading.Lock()
        self._held: list[Mapping[str, Any]] | None = []  # records finished during the refill; None after it
        self._firing: dict[str, Alert] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trayllm-slo", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self.writer is not None:
            self.writer.close()

    # -- inputs ------------------------------------------------------------------------------

    def observe(self, record: Mapping[str, Any]) -> None:
        """One request record, as written (any thread)."""
        with self._lock:
            if self._held is not None:
                self._held.append(record)
                return
        self.monitor.observe(record)

    def oom(self, report: OomReport) -> None:
        """The engine ran out of memory (inference thread): announce it now."""
        self._announce(self.monitor.oom(report.message), _oom_details(report))

    def engine_reachability(self, name: str, url: str, reachable: bool, reason: str) -> None:
        """A remote engine's upstream stopped (or started again) answering (its engine's thread): an alert of
        its own, ``engine.unreachable.<name>``, firing at once and resolved when a probe or request gets
        through; not an SLO, so no window and no hold."""
        key = f"{ENGINE_UNREACHABLE}.{name}"
        with self._lock:
            if reachable and key not in self._firing:
                return
        message = reason if reachable else f"the engine {name!r} ({url}) cannot be reached: {reason}"
        event = AlertEvent(key, "resolved" if reachable else "firing", None, None, time.time(), message)
        self._announce(event, {"llm.engine.url": url})

    def evaluate(self, now: float | None = None) -> None:
        """Judge the objectives and announce every transition."""
        for event in self.monitor.evaluate(now):
            self._announce(event)

    # -- outputs -----------------------------------------------------------------------------

    def firing(self) -> list[Alert]:
        """The alerts firing now, latest transition each (for /v1/status and the events' hello)."""
        with self._lock:
            return list(self._firing.values())

    def _announce(self, event: AlertEvent, details: Mapping[str, Any] | None = None) -> None:
        severity = severity_of(event.key)
        short = {k.rsplit(".", 1)[-1]: v for k, v in (details or {}).items() if v is not None}
        alert = Alert(
            key=event.key,
            state=event.state,  # type: ignore[arg-type]  # announced only when firing or resolved
            severity=severity,
            message=event.message,
            value=event.value,
            threshold=event.threshold,
            at=event.at,
            details=short or None,
        )
        with self._lock:  # publish and bookkeeping together, so /v1/status never lags the stream
            published = self.bus.publish(f"alert.{event.state}", alert.model_dump(exclude={"id"}))
            alert.id = published.id
            if event.state == "firing":
                self._firing[event.key] = alert
            else:
                self._firing.pop(event.key, None)
        log.log(
            logging.WARNING if event.state == "firing" else logging.INFO,
            event.message,
            extra={"alert": event.key, "alert_state": event.state, "event_id": alert.id},
        )
        if self.writer is None:
            return
        model = self.model_info()
        try:
            self.writer.write(
                alert_document(
                    event_id=published.id,
                    key=event.key,
                    state=event.state,
                    severity=severity,
                    message=event.message,
                    at=event.at,
                    value=event.value,
                    threshold=event.threshold,
                    host=self.host,
                    model_name=model.name if model else None,
                    model_version=model.version if model else None,
                    details=details,
                )
            )
        except (ValueError, RuntimeError):
            log.exception("could not write the alert record %s", published.id)

    # -- the SLO thread ----------------------------------------------------------------------

    def _run(self) -> None:
        already_read: set[str] = set()
        try:
            already_read = self._restore()
        except Exception:  # a damaged file must not stop the monitor
            log.exception("could not read the SLO history; starting with empty windows")
        self._release_held(already_read)
        while not self._stop.wait(self.settings.slo_eval_interval_s):
            try:
                self.evaluate()
            except Exception:
                log.exception("SLO evaluation failed")

    def _restore(self) -> set[str]:
        """Alert states and windows from the files; the ids of records that may also have been held back."""
        began, started = time.monotonic(), time.time()
        last: dict[str, Mapping[str, Any]] = {}
        alerts_read, records_read = ReadStats(), ReadStats()  # lines torn by a crash are skipped and counted
        for doc in iter_records(self.settings.alerts_path, stats=alerts_read):
            key = field_value(doc, "rule.name")
            if isinstance(key, str) and field_value(doc, "event.action") in ("firing", "resolved"):
                last[key] = doc
        for key, alert in last.items():
            if field_value(alert, "event.action") == "firing" and key in self.monitor.keys:
                self.monitor.restore(key, "firing")
                with self._lock:
                    self._firing.setdefault(
                        key,
                        Alert(
                            key=key,
                            state="firing",
                            severity=severity_of(key),
                            message=str(alert.get("message", key)),
                            value=field_value(alert, "llm.alert.value"),
                            threshold=field_value(alert, "llm.alert.threshold"),
                            at=record_end_time(alert) or started,
                            id=str(field_value(alert, "event.id")),
                        ),
                    )
        recent_ids: set[str] = set()
        for doc in iter_records(self.settings.records_path, stats=records_read):
            self.monitor.observe(doc)
            end = record_end_time(doc)
            if end is not None and end >= started - RESTART_OVERLAP_S:
                recent_ids.add(str(field_value(doc, "event.id")))
        skipped = records_read.skipped + alerts_read.skipped
        log.log(
            logging.WARNING if skipped else logging.INFO,
            "SLO windows refilled",
            extra={
                "records": records_read.records,
                "skipped_lines": skipped,
                "restored_firing": sorted(self._firing),
                "seconds": round(time.monotonic() - began, 3),
            },
        )
        return recent_ids

    def _release_held(self, already_read: set[str]) -> None:
        with self._lock:
            held, self._held = self._held, None
        for doc in held or []:
            if str(field_value(doc, "event.id")) not in already_read:
                self.monitor.observe(doc)
