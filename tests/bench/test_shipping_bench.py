"""trayllm bench --shipping: it ships real records to a real HTTP endpoint and counts what was acknowledged."""

from __future__ import annotations

from es_standin import ElasticStandIn

from trayllm.bench.shipping import Latency, Throughput, measure_throughput, to_markdown
from trayllm.elastic.connection import ElasticTarget


def test_throughput_ships_every_record_and_a_second_run_is_not_all_duplicates():
    standin = ElasticStandIn()
    try:
        first = measure_throughput(ElasticTarget(standin.url), 300)
        second = measure_throughput(ElasticTarget(standin.url), 300)
    finally:
        standin.close()
    assert first.records == second.records == 300 and first.seconds > 0
    assert len(standin.ids("logs-trayllm.requests-default")) == 600  # the runs used different ids
    assert max(standin.indexed.values()) == 1


def test_markdown_names_the_command_and_the_figures():
    text = to_markdown(Throughput(1000, 0.5, 1), Latency(8, 5000, 100.0, 101.0, 1000), "trayllm bench --shipping 1000")
    assert "**2,000 records/s**" in text and "+1.0 ms, +1.0 %" in text and "shipped while serving: 1,000" in text
