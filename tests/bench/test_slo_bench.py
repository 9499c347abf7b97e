"""trayllm bench --slo: the records it times are real records, and the report says what it measured."""

from __future__ import annotations

from trayllm.bench.slo import measure_slo, to_markdown


def test_slo_bench_reads_back_every_record_and_reports_it():
    cost = measure_slo(500, ticks=2)
    assert cost.records == 500 and cost.file_mb > 0
    assert cost.refill_s > 0 and cost.tick_ms > 0
    text = to_markdown(cost, "trayllm bench --slo 500")
    assert "| 500 |" in text and "`trayllm bench --slo 500`" in text
