"""The daemon's own log lines: ECS JSON with the records' timestamp form."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone

from trayllm.telemetry.log_format import ECS_VERSION, EcsJsonFormatter
from trayllm.telemetry.record import iso_timestamp


def format_line(created: float, msg: str = "model ready", level: int = logging.WARNING) -> dict:
    record = logging.LogRecord("trayllm.daemon", level, __file__, 1, msg, None, None)
    record.created = created
    return json.loads(EcsJsonFormatter().format(record))


def test_a_line_is_ecs_with_an_iso_utc_timestamp() -> None:
    line = format_line(1_780_000_000.348)
    assert list(line) == ["@timestamp", "log.level", "log.logger", "message", "ecs.version"]
    assert line["@timestamp"] == "2026-05-28T20:26:40.348000Z"
    parsed = datetime.fromisoformat(line["@timestamp"].replace("Z", "+00:00"))
    assert parsed.utcoffset().total_seconds() == 0
    assert parsed.timestamp() == 1_780_000_000.348
    assert (line["log.level"], line["log.logger"], line["message"]) == ("WARNING", "trayllm.daemon", "model ready")
    assert line["ecs.version"] == ECS_VERSION


def test_the_timestamp_is_the_records_form_whatever_the_local_zone(monkeypatch) -> None:
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        moment = datetime(2026, 12, 4, 14, 2, 22, 500000, tzinfo=timezone.utc)
        assert format_line(moment.timestamp())["@timestamp"] == iso_timestamp(moment) == "2026-12-04T14:02:22.500000Z"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
