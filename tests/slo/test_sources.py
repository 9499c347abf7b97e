"""read_report gives the wire report from any source; to_wire, the one row conversion, keeps every field."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from slo_records import NOW, record

from trayllm import api_status, config
from trayllm.errors import ConfigError
from trayllm.slo.objectives import configured_objectives
from trayllm.slo.report import ReportRow, slo_report, to_wire
from trayllm.slo.sources import parse_at, read_report


def test_the_report_row_and_the_wire_row_have_the_same_fields():
    """A field added to one and not the other would vanish in ``to_wire`` (pydantic ignores extra keys) or fail
    there at run time: this test fails first."""
    assert [f.name for f in dataclasses.fields(ReportRow)] == list(api_status.SloRow.model_fields)


def test_to_wire_keeps_every_value():
    row = ReportRow("ttft", 3600, 1.5, 3.0, "ok", 0.25, 12, "s")
    assert to_wire(row).model_dump() == dataclasses.asdict(row)


def test_a_report_from_a_file_is_the_wire_report_the_daemon_would_send(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    records = [record(500, ttft_s=1.0), record(550, ttft_s=2.0, error_type="oom", status=500)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    settings = config.load_settings()
    report = read_report(settings, records=path, at=repr(NOW))
    assert isinstance(report, api_status.SloReport) and report.at == NOW and report.alerts == {}
    assert report.objectives == [to_wire(r) for r in slo_report(configured_objectives(settings), records, NOW)]


def test_the_daemon_judges_only_the_present(tmp_path: Path):
    with pytest.raises(ConfigError, match="--at needs --from FILE or --from-elastic"):
        read_report(config.load_settings({"socket": str(tmp_path / "none.sock")}), at="0")


def test_at_takes_unix_seconds_or_iso_8601():
    assert parse_at("1767225600") == parse_at("2026-01-01T00:00:00Z") == 1767225600.0
    with pytest.raises(ConfigError, match="--at wants Unix seconds or an ISO 8601 time, got 'yesterday'"):
        parse_at("yesterday")
