"""The daemon's own log lines as ECS JSON, so Filebeat and Elasticsearch read them as they read the records.

python-json-logger fills ``asctime`` with ``logging.Formatter.formatTime``: local time, a comma before
the milliseconds and no zone, which Elasticsearch's ``date`` type refuses. Here it is the records' form
(ISO 8601, UTC, ``Z``), and the level and logger sit under ECS's ``log.*`` names.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from trayllm.telemetry.record import iso_timestamp

ECS_VERSION = "8.11.0"


class EcsJsonFormatter(JsonFormatter):
    """One JSON object a line: ``@timestamp``, ``log.level``, ``log.logger``, ``message``, ``ecs.version``."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "@timestamp", "levelname": "log.level", "name": "log.logger"},
            static_fields={"ecs.version": ECS_VERSION},
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )  # uvicorn's copy with ANSI colours

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        return iso_timestamp(datetime.fromtimestamp(record.created, tz=timezone.utc))
