"""The exact nearest-rank sample from Elasticsearch past ``index.max_result_window`` (issue 18, acceptance 3):
``slo --from-elastic`` equals ``slo --from FILE`` for a window of 25,000 records, and ``value_at_rank`` equals
the local percentile for every rank, with ties, tiny windows and result windows down to 1."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from es_standin import ElasticStandIn
from slo_records import T0, record

from trayllm.cli import cli
from trayllm.config import load_settings
from trayllm.elastic.connection import ElasticTarget
from trayllm.elastic.slo_query import objective_filter, value_at_rank
from trayllm.elastic.templates import install
from trayllm.slo.objectives import DEFAULT_OBJECTIVES
from trayllm.slo.percentile import nearest_rank, percentile

INDEX = "logs-trayllm.requests-default"
TTFT = DEFAULT_OBJECTIVES[0]


def standin_holding(docs: list[dict], max_result_window: int) -> ElasticStandIn:
    """A stand-in with trayllm's templates and ``docs`` stored as if shipped (shipping 25,000 through _bulk
    would test the shipper, and take most of the test's time)."""
    standin = ElasticStandIn(max_result_window=max_result_window)
    settings = load_settings({"es_url": standin.url}, environ={})
    install(ElasticTarget.from_settings(settings).client(), standin.url)
    standin.docs[INDEX] = {doc["event"]["id"]: doc for doc in docs}
    return standin


def searches(standin: ElasticStandIn) -> int:
    return sum(1 for _, path, _ in standin.requests if "_search" in path)


def slo_json(*args: str, env: dict[str, str]) -> dict:
    result = CliRunner().invoke(cli, ["slo", "--json", *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("max_result_window", "expected_searches"),
    [
        (10_000, 2),  # the aggregations, then one search 250 from the top
        (100, 5),  # ... refused as too deep, then search_after pages of 100, 100 and 51
    ],
)
def test_p99_of_25000_records_from_elasticsearch_equals_the_one_from_the_file(
    tmp_path: Path, max_result_window: int, expected_searches: int
) -> None:
    """Rank 24,750 of 25,000: an ascending ``from`` of 24,749 is past any result window. The slowest 2 % tie at
    exactly 2.5 s, so the wanted sample sits inside a run of 500 equal values."""
    docs = [
        record(
            i,
            duration_s=0.5 + i % 7,
            ttft_s=2.5 if i % 50 == 0 else 0.001 * (i * 7919 % 2000),
            vram_pct=0.4 + 0.01 * (i % 30),
            error_type="oom" if i % 997 == 0 else None,
        )
        for i in range(25_000)
    ]
    records = tmp_path / "requests.jsonl"
    records.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    standin = standin_holding(docs, max_result_window)
    try:
        at = datetime.fromtimestamp(T0.timestamp() + 25_100, timezone.utc).isoformat()
        env = {"TRAYLLM_SLO_TTFT_WINDOW_S": "30000", "TRAYLLM_STATE_DIR": str(tmp_path / "state")}
        offline = slo_json("--from", str(records), "--at", at, env=env)
        before = searches(standin)
        remote = slo_json("--from-elastic", "--es-url", standin.url, "--at", at, env=env)
        assert searches(standin) - before == expected_searches
    finally:
        standin.close()
    assert remote["objectives"] == offline["objectives"]
    p99 = next(row for row in remote["objectives"] if row["objective"] == TTFT.name)
    assert p99["samples"] == 25_000 and p99["value"] == 2.5
    ttfts = [doc["llm"]["ttft"]["ns"] * TTFT.scale for doc in docs]
    assert p99["value"] == percentile(ttfts, 99)  # the daemon's own definition, on the same samples


@pytest.mark.parametrize("max_result_window", [1, 2, 3, 10_000])
@pytest.mark.parametrize("count", [1, 2, 9, 40])
def test_every_rank_is_the_nearest_rank_sample_whatever_the_result_window(max_result_window: int, count: int) -> None:
    """Five distinct values among ``count`` samples: page boundaries fall inside runs of ties; a result window
    of 1 pages one hit at a time, and the default one takes a single search however small the window."""
    docs = [record(i, ttft_s=0.1 * (i * 37 % 5)) for i in range(count)]
    raw = sorted(doc["llm"]["ttft"]["ns"] for doc in docs)
    standin = standin_holding(docs, max_result_window)
    now = T0.timestamp() + count + 10
    try:
        es = ElasticTarget.from_settings(load_settings({"es_url": standin.url}, environ={})).client()
        found = [
            value_at_rank(es, INDEX, objective_filter(TTFT, now), TTFT.field, count, rank)
            for rank in range(1, count + 1)
        ]
    finally:
        standin.close()
    assert found == raw
    assert found[nearest_rank(count, 99) - 1] == percentile(raw, 99)
