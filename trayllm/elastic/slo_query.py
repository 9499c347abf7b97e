"""The SLO report computed by Elasticsearch, so dashboards, ``trayllm slo --from-elastic`` and the daemon agree.

One ``_search`` with ``size: 0`` carries every objective as a ``filter`` aggregation over its window (by
``event.end``, the moment a request is judged, as in the daemon): the sample count, how many samples were
bad, and ``max`` for the VRAM objective. The error rate leaves out the same client-side error types the
daemon leaves out.

Percentiles are the one statistic Elasticsearch cannot give exactly: its ``percentiles`` aggregation
is a t-digest estimate. The local report uses the nearest-rank percentile, so for each percentile
objective the exact sample is fetched: the value at the nearest rank for the count from the aggregation
(``value_at_rank``). With that, both paths give the same numbers for the same records. The one limit is the
VRAM share: it is mapped as a ``scaled_float`` with a factor of 1000, so Elasticsearch returns it to 0.1 %.

Elasticsearch refuses ``from + size`` over ``index.max_result_window`` (10,000 by default), and a P99 is
deep: rank 24,750 of 25,000 would be ``from`` 24,749. So the sample is counted from the nearer end (a P99
sorts descending: that rank is 250 from the top), fetched with one ``from``/``size = 1`` search while that
offset fits the window, and past it with ``search_after`` pages of at most the window (sorted on the value,
then ``event.id``, unique per record, so a page boundary inside a run of equal values neither skips nor
repeats one). A P99 needs one search below a million samples, two below two million; the median of a
million, 50 pages. A cluster with a smaller window says so in its 400, and the pages shrink to fit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from trayllm.elastic.connection import elastic_errors
from trayllm.errors import ElasticError
from trayllm.slo.objectives import Objective
from trayllm.slo.percentile import nearest_rank
from trayllm.slo.report import ReportRow, make_row

REQUESTS_PATTERN = "logs-trayllm.requests-*"
RESULT_WINDOW = 10_000  # index.max_result_window's default: the deepest from + size a search may ask
TIEBREAKER = "event.id"  # unique per record (it is the _id), and a keyword: sortable
_WINDOW_REFUSED = re.compile(r"Result window is too large, from \+ size must be less than or equal to: \[(\d+)\]")


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
                rank = nearest_rank(samples, o.percentile)
                value = value_at_rank(es, index, objective_filter(o, now), o.field, samples, rank) * o.scale
            rows.append(make_row(o, value, samples, bad))
    return rows


def value_at_rank(
    es: Any, index: str, query: dict[str, Any], field: str, count: int, rank: int, window: int = RESULT_WINDOW
) -> float:
    """The ``rank``-th smallest (1-based) ``field`` value of the ``count`` records ``query`` matches, without a
    ``from + size`` over ``window`` (the cluster's ``index.max_result_window``; a smaller one in the cluster's
    refusal is learned and used)."""
    from elasticsearch import BadRequestError

    while True:
        try:
            return _value_at_rank(es, index, query, field, count, rank, window)
        except BadRequestError as exc:
            limit = _refused_window(exc)
            if limit is None or limit >= window:
                raise
            window = limit


def _value_at_rank(es: Any, index: str, query: dict[str, Any], field: str, count: int, rank: int, window: int) -> float:
    descending = rank - 1 > count - rank  # count from the nearer end
    before = count - rank if descending else rank - 1  # values ahead of the wanted one, from that end
    order = {"order": "desc" if descending else "asc"}
    if before < window:
        hits = _hits(es, index, query, [{field: order}], size=1, from_=before)
        return float(hits[0]["sort"][0])
    sort = [{field: order}, {TIEBREAKER: order}]
    after: list[Any] | None = None
    left = before + 1  # hits to read, the wanted one last
    while True:
        hits = _hits(es, index, query, sort, size=min(window, left), search_after=after)
        left -= len(hits)
        if left == 0:
            return float(hits[-1]["sort"][0])
        after = hits[-1]["sort"]


def _hits(es: Any, index: str, query: dict[str, Any], sort: list[dict[str, Any]], **page: Any) -> list[Any]:
    """One page of sort values; ElasticError when the records changed under the count (a page came back short)."""
    response = es.search(index=index, query=query, sort=sort, source=False, track_total_hits=False, **page)
    hits: list[Any] = response["hits"]["hits"]
    if len(hits) < page["size"]:
        raise ElasticError("the records changed while the SLO report was read (fewer than counted); run it again")
    return hits


def _refused_window(exc: Any) -> int | None:
    """The cluster's ``index.max_result_window`` when ``exc`` (a 400) is its refusal of a search as too deep."""
    match = _WINDOW_REFUSED.search(str(exc.body))
    return int(match.group(1)) if match else None
