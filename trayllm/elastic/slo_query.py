"""The SLO report computed by Elasticsearch, so dashboards, ``trayllm slo --from-elastic`` and the daemon agree.

One ``_search`` with ``size: 0`` carries every objective as a ``filter`` aggregation over its window (by
``event.end``, the moment a request is judged, as in the daemon): the sample count, how many samples were
bad, and ``max`` for the VRAM objective. The error rate leaves out the same client-side error types the
daemon leaves out.

Percentiles are the one statistic Elasticsearch cannot give exactly: its ``percentiles`` aggregation
is a t-digest estimate. The local report uses the nearest-rank percentile, so for each percentile
objective one more small search fetches the exact value: sorted ascending, ``from = rank - 1``,
``size = 1``. The rank is the nearest rank for the count from the aggregation. With that, both paths give
the same numbers for the same records. The one limit is the VRAM share: it is mapped as a
``scaled_float`` with a factor of 1000, so Elasticsearch returns it to 0.1 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trayllm.elastic.connection import elastic_errors
from trayllm.slo.objectives import Objective
from trayllm.slo.percentile import nearest_rank
from trayllm.slo.report import ReportRow, make_row

REQUESTS_PATTERN = "logs-trayllm.requests-*"


def _millis(seconds: float) -> int:
    return int(round(seconds * 1000))


def objective_filter(objective: Objective, now: float) -> dict[str, Any]:
    """The records that count for ``objective`` at ``now``: its window, and the field present (or, for a
    ratio, the error types that count)."""
    window = {
        "range": {"event.end": {"gt": _millis(now - objective.window_s), "lte": _millis(now), "format": "epoch_millis"}}
    }
    if objective.kind == "ratio":
        return {"bool": {"filter": [window], "must_not": [{"terms": {objective.field: sorted(objective.excluded)}}]}}
    return {"bool": {"filter": [window, {"exists": {"field": objective.field}}]}}


def aggregations(objectives: Sequence[Objective], now: float) -> dict[str, Any]:
    """The aggregations of the one SLO query."""
    aggs: dict[str, Any] = {}
    for o in objectives:
        if o.kind == "ratio":
            bad: dict[str, Any] = {"exists": {"field": o.field}}
        else:
            bad = {"range": {o.field: {"gt": o.threshold / o.scale}}}
        sub: dict[str, Any] = {"bad": {"filter": bad}}
        if o.kind == "max":
            sub["stat"] = {"max": {"field": o.field}}
        aggs[o.name] = {"filter": objective_filter(o, now), "aggs": sub}
    return aggs


def slo_report_from_elastic(
    es: Any, objectives: Sequence[Objective], now: float, where: str, index: str = REQUESTS_PATTERN
) -> list[ReportRow]:
    """Every objective judged at ``now`` (Unix seconds) over the records in Elasticsearch."""
    with elastic_errors(where):
        response = es.search(index=index, size=0, aggs=aggregations(objectives, now), track_total_hits=False)
        rows = []
        for o in objectives:
            found = response["aggregations"][o.name]
            samples, bad = int(found["doc_count"]), int(found["bad"]["doc_count"])
            value: float | None = None
            if samples and o.kind == "ratio":
                value = bad / samples
            elif samples and o.kind == "max" and found["stat"]["value"] is not None:
                value = found["stat"]["value"] * o.scale
            elif samples and o.kind == "percentile":
                assert o.percentile is not None
                hit = es.search(
                    index=index,
                    size=1,
                    from_=nearest_rank(samples, o.percentile) - 1,
                    query=objective_filter(o, now),
                    sort=[{o.field: {"order": "asc"}}],
                    source=False,
                    track_total_hits=False,
                )
                value = hit["hits"]["hits"][0]["sort"][0] * o.scale
            rows.append(make_row(o, value, samples, bad))
    return rows
