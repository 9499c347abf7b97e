"""Where `trayllm slo` gets its report: the live daemon, a request-record file, or the records in Elasticsearch.

Whichever it is, the answer is the daemon's wire type, ``api_status.SloReport``: rows computed here go through the one
conversion, ``report.to_wire``. Only the daemon knows its alerts' states, so a report computed here has none.
"""

from __future__ import annotations

import time
from pathlib import Path

from trayllm import api_status
from trayllm.client import DaemonClient
from trayllm.config import Settings
from trayllm.errors import ConfigError
from trayllm.slo.objectives import configured_objectives
from trayllm.slo.report import ReportRow, parse_time, slo_report, to_wire
from trayllm.telemetry.reader import iter_records


def read_report(
    settings: Settings, records: Path | None = None, from_elastic: bool = False, at: str | None = None
) -> api_status.SloReport:
    """The SLO report from Elasticsearch (``from_elastic``: ``settings`` name it), from the request-record file
    ``records`` (and its rotated copies), else from the daemon ``settings`` name; not both of the first two.

    ``at`` (Unix seconds or ISO 8601; default now) judges records as of another moment; the daemon only judges
    the present, so asking it with ``at`` is a ConfigError.
    """
    if from_elastic:
        now, rows = _from_elastic(settings, at)
    elif records is not None:
        now, rows = _from_file(settings, records, at)
    else:
        if at is not None:
            raise ConfigError("--at needs --from FILE or --from-elastic: the daemon only judges the present")
        with DaemonClient.from_settings(settings) as client:
            return client.slo()
    return api_status.SloReport(at=now, objectives=[to_wire(row) for row in rows], alerts={})


def _from_elastic(settings: Settings, at: str | None) -> tuple[float, list[ReportRow]]:
    """The moment judged and the rows, from the request records in the Elasticsearch ``settings`` name."""
    from trayllm.elastic.connection import ElasticTarget, check_version
    from trayllm.elastic.slo_query import slo_report_from_elastic

    target = ElasticTarget.from_settings(settings)
    es = target.client()
    check_version(es, target.url)
    now = parse_at(at)
    return now, slo_report_from_elastic(es, configured_objectives(settings), now, target.url)


def _from_file(settings: Settings, records: Path, at: str | None) -> tuple[float, list[ReportRow]]:
    """The moment judged and the rows, from a request-record file and its rotated copies."""
    if not records.exists():
        raise ConfigError(f"no record file at {records}")
    now = parse_at(at)
    return now, slo_report(configured_objectives(settings), iter_records(records), now)


def parse_at(value: str | None) -> float:
    """``--at`` as Unix seconds (now when not given)."""
    if value is None:
        return time.time()
    try:
        return float(value)
    except ValueError:
        pass
    parsed = parse_time(value)
    if parsed is None:
        raise ConfigError(f"--at wants Unix seconds or an ISO 8601 time, got {value!r}")
    return parsed
