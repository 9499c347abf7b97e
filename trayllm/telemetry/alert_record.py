"""Build one alert transition's record: the ``trayllm.alerts`` stream's nested ECS document.

Each transition (firing, resolved) is one line in ``alerts.jsonl``, shipped beside the request records
to ``logs-trayllm.alerts-default``. Its ``event.id`` is the same id ``/v1/events`` gives the event, so
the tray, the file and Elasticsearch name a transition the same way. Only dotted paths the alert schema
holds are written (``schema.ALERTS``), and absent values stay absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from trayllm import __version__
from trayllm.telemetry.record import SERVICE_NAME, iso_timestamp
from trayllm.telemetry.schema import ALERT_DATA_STREAM, ALERTS, nest


def _level(state: str, severity: str) -> str:
    if state != "firing":
        return "info"
    return "error" if severity == "critical" else "warn"


def alert_document(
    *,
    event_id: str,
    key: str,
    state: str,
    severity: str,
    message: str,
    at: float,
    value: float | None,
    threshold: float | None,
    host: str,
    model_name: str | None = None,
    model_version: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One alert transition as a nested document; ``details`` are extra dotted fields (OOM forensics).

    Raises ValueError for a detail the alert schema does not hold, so a typo cannot reach Elasticsearch.
    """
    flat: dict[str, Any] = {
        "@timestamp": iso_timestamp(datetime.fromtimestamp(at, timezone.utc)),
        "log.level": _level(state, severity),
        "message": message,
        "event.id": event_id,
        "event.kind": "alert",
        "event.action": state,
        "event.dataset": ALERT_DATA_STREAM["dataset"],
        "rule.name": key,
        "llm.alert.severity": severity,
        "llm.alert.value": value,
        "llm.alert.threshold": threshold,
        "gen_ai.response.model": model_name,
        "llm.model.version": model_version,
        "service.name": SERVICE_NAME,
        "service.version": __version__,
        "host.name": host,
    }
    for path, detail in (details or {}).items():
        if path not in ALERTS.fields:
            raise ValueError(f"{path}: not an alert-record field")
        flat[path] = detail
    flat.update({f"data_stream.{k}": v for k, v in ALERT_DATA_STREAM.items()})
    return nest((k, v) for k, v in flat.items() if v is not None)
