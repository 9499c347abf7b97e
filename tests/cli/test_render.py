"""The CLI's text for a daemon's SLO report: one table row per objective, whatever its names hold."""

from __future__ import annotations

from trayllm import api_status
from trayllm.cli.render import format_slo_report


def _report(alerts: dict[str, str]) -> api_status.SloReport:
    return api_status.SloReport.model_validate(
        {
            "at": 1.0,
            "alerts": alerts,
            "objectives": [
                {
                    "objective": "first_token\nlatency",
                    "window_s": 3600,
                    "value": 3.5,
                    "threshold": 3.0,
                    "state": "breach",
                    "budget_left": -0.5,
                    "samples": 120,
                    "unit": "s",
                }
            ],
        }
    )


def test_slo_report_is_a_table_then_the_firing_alerts_on_one_line():
    lines = format_slo_report(_report({"error_rate_fast_burn": "firing", "oom": "ok", "a\nb": "firing"})).splitlines()
    assert lines[0].split() == ["objective", "window", "value", "threshold", "state", "budget", "left", "samples"]
    assert lines[1].split()[:2] == ["first_token", "latency"]  # a name's line break cannot start a row of its own
    assert lines[1].split()[2:] == ["1", "h", "3.5", "s", "3", "s", "breach", "-50%", "120"]
    assert lines[2:] == ["firing: a b, error_rate_fast_burn"]


def test_slo_report_without_firing_alerts_is_the_table_alone():
    assert len(format_slo_report(_report({"oom": "resolved"})).splitlines()) == 2
