"""slo_report over real-shaped (nested ECS, schema-valid) request records."""

from __future__ import annotations

import json

import pytest
from slo_records import NOW, T0, record

from trayllm.slo.objectives import DEFAULT_OBJECTIVES, Objective
from trayllm.slo.report import record_end_time, slo_report, to_json, to_text
from trayllm.telemetry.reader import iter_records
from trayllm.telemetry.schema import validate_record

RECORDS = [
    record(0, duration_s=2, ttft_s=1.0, vram_pct=0.5),  # ends T0+2
    record(400, ttft_s=2.0, vram_pct=0.7),  # ends T0+401
    record(500, vram_pct=0.9, error_type="oom", status=500),  # ends T0+501, no first token
    record(510, error_type="invalid_request", status=400),  # the client's fault: not counted
    record(520, ttft_s=3.0, error_type="cancelled", status=499),  # cancelled after its first token
    record(599.5, ttft_s=10.0, error_type="engine_error", status=500),  # ends T0+600.5: after NOW
]

OBJECTIVES = (
    Objective(
        "ttft_p50",
        "percentile",
        "llm.ttft.ns",
        percentile=50,
        threshold=2.5,
        scale=1e-9,
        unit="s",
        window_s=3600,
        min_samples=3,
    ),
    Objective("vram", "max", "llm.vram.peak.pct", threshold=0.8, unit="ratio", window_s=300),
    Objective("errors", "ratio", "error.type", threshold=0.25, unit="ratio", window_s=3600),
)


def test_records_are_real_shaped():
    for r in RECORDS:
        assert validate_record(r) == []


def test_end_time():
    assert record_end_time(RECORDS[0]) == pytest.approx(T0.timestamp() + 2)
    assert record_end_time({"@timestamp": "not a time"}) is None
    assert record_end_time({"event": {"duration": 5}}) is None


def test_rows():
    ttft, vram, errors = slo_report(OBJECTIVES, RECORDS + [{"@timestamp": "garbage"}], NOW)
    # ttft: records 1, 2 and the cancelled 5 (the last ends after NOW): [1, 2, 3] -> P50 rank ceil(1.5)=2 -> 2.0
    # <= 2.5: ok; budget 50 %: 1 of 3 above 2.5 s -> 1 - 1 / (0.5 * 3) = 1/3 left
    assert (ttft.value, ttft.samples, ttft.state) == (pytest.approx(2.0), 3, "ok")
    assert ttft.budget_left == pytest.approx(1 / 3)
    # vram: window (T0+300, T0+600]: 0.7 and 0.9 (record 1 ended at T0+2) -> max 0.9 > 0.8; no budget for max
    assert (vram.value, vram.samples, vram.state, vram.budget_left) == (0.9, 2, "breach", None)
    # errors: counted 1 (ok), 2 (ok), 3 (oom); 4 and 5 are not counted; 6 not yet -> 1/3 > 0.25
    # budget: 1 - 1 / (0.25 * 3) = 1 - 4/3 = -1/3
    assert (errors.value, errors.samples, errors.state) == (pytest.approx(1 / 3), 3, "breach")
    assert errors.budget_left == pytest.approx(-1 / 3)
    assert (errors.window_s, errors.threshold) == (3600, 0.25)


def test_defaults_on_few_records_are_insufficient():
    rows = {r.objective: r for r in slo_report(DEFAULT_OBJECTIVES, RECORDS, NOW)}
    # 3 ttft samples < 100; 3 counted requests < 100: insufficient and no budget figure
    assert (rows["first_token_latency_p99"].state, rows["first_token_latency_p99"].value) == ("insufficient", 3.0)
    assert rows["first_token_latency_p99"].budget_left is None
    assert (rows["error_rate"].state, rows["error_rate"].samples) == ("insufficient", 3)
    assert (rows["peak_vram"].state, rows["peak_vram"].value) == ("breach", 0.9)  # min_samples 1


def test_from_a_record_file(tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS) + '{"partial')
    assert slo_report(OBJECTIVES, iter_records(path), NOW) == slo_report(OBJECTIVES, RECORDS, NOW)


def test_text_and_json():
    rows = slo_report(OBJECTIVES, RECORDS, NOW)
    lines = to_text(rows).splitlines()
    assert lines[0].split() == ["objective", "window", "value", "threshold", "state", "budget", "left", "samples"]
    assert lines[1].split() == ["ttft_p50", "1", "h", "2", "s", "2.5", "s", "ok", "33.3%", "3"]
    assert lines[2].split() == ["vram", "5", "min", "90%", "80%", "breach", "-", "2"]
    assert lines[3].split() == ["errors", "1", "h", "33.3%", "25%", "breach", "-33.3%", "3"]
    data = json.loads(to_json(rows))
    assert [d["objective"] for d in data] == ["ttft_p50", "vram", "errors"]
    assert data[1] == {
        "objective": "vram",
        "window_s": 300,
        "value": 0.9,
        "threshold": 0.8,
        "state": "breach",
        "budget_left": None,
        "samples": 2,
        "unit": "ratio",
    }
