"""Alert transitions as records of the trayllm.alerts stream: valid against their schema, nothing invented."""

from __future__ import annotations

import pytest

from trayllm.telemetry.alert_record import alert_document
from trayllm.telemetry.schema import ALERTS, REQUESTS, validate_record

BASE = {"event_id": "b-1", "host": "box", "at": 1_767_225_600.25}


def test_an_objective_firing_and_resolving():
    firing = alert_document(
        key="slo.first_token_latency_p99",
        state="firing",
        severity="warning",
        message="p99 high",
        value=3.2,
        threshold=3.0,
        model_name="m",
        model_version="v1",
        **BASE,
    )
    assert ALERTS.validate(firing) == []
    assert firing["@timestamp"] == "2026-01-01T00:00:00.250000Z"
    assert (firing["event"]["kind"], firing["event"]["action"], firing["log"]["level"]) == ("alert", "firing", "warn")
    assert firing["llm"]["alert"] == {"severity": "warning", "value": 3.2, "threshold": 3.0}
    assert firing["data_stream"] == {"type": "logs", "dataset": "trayllm.alerts", "namespace": "default"}
    resolved = alert_document(
        key="slo.first_token_latency_p99",
        state="resolved",
        severity="warning",
        message="ok again",
        value=1.0,
        threshold=3.0,
        **BASE,
    )
    assert ALERTS.validate(resolved) == [] and resolved["log"]["level"] == "info"
    assert "gen_ai" not in resolved  # no model known: left out, not null


def test_an_oom_with_its_forensics_and_nothing_absent():
    doc = alert_document(
        key="oom",
        state="firing",
        severity="critical",
        message="out of memory",
        value=None,
        threshold=None,
        details={
            "llm.alert.request_ids": ["r1", "r2"],
            "llm.oom.phase": "decode",
            "llm.oom.batch_size": 2,
            "llm.vram.allocated.bytes": None,
        },
        **BASE,
    )
    assert ALERTS.validate(doc) == []
    assert doc["log"]["level"] == "error"
    assert doc["llm"]["oom"] == {"phase": "decode", "batch_size": 2}
    assert "value" not in doc["llm"]["alert"] and "vram" not in doc["llm"]


def test_a_detail_outside_the_schema_is_refused():
    with pytest.raises(ValueError, match="llm.oom.prompt: not an alert-record field"):
        alert_document(
            key="oom",
            state="firing",
            severity="critical",
            message="m",
            value=None,
            threshold=None,
            details={"llm.oom.prompt": "secret text"},
            **BASE,
        )


def test_the_two_streams_do_not_accept_each_others_records():
    doc = alert_document(
        key="oom", state="firing", severity="critical", message="m", value=None, threshold=None, **BASE
    )
    problems = validate_record(doc)
    assert any("rule.name: not a request-record field" in p for p in problems)
    assert any("data_stream.dataset: 'trayllm.alerts'" in p for p in problems)
    assert REQUESTS.index_pattern == "logs-trayllm.requests-default"
    assert ALERTS.index_pattern == "logs-trayllm.alerts-default"
