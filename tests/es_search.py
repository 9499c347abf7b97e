"""``_search`` for the Elasticsearch stand-in: the query and aggregation subset trayllm sends, evaluated over
the stored documents the way Elasticsearch does, and a 400 for anything outside that subset.

Queries: ``match_all``, ``bool`` (``filter`` / ``must`` / ``must_not``), ``range`` (``gt/gte/lt/lte``,
dates as ``epoch_millis``), ``exists``, ``terms``. Aggregations: ``filter`` (with sub-aggregations),
``max`` and ``value_count``. ``scaled_float`` fields come back at their mapping's resolution, as doc
values do. Hits: ``size``, ``from``, ``sort`` on one field (the sort value is the raw field value).
"""

from __future__ import annotations

import fnmatch
from datetime import datetime
from typing import Any


class SearchError(ValueError):
    """Something the stand-in does not implement: it answers 400, never a made-up result."""


def _value(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _comparable(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000
        except ValueError:
            return None
    return None


def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    ((kind, spec),) = query.items()
    if kind == "match_all":
        return True
    if kind == "bool":
        unknown = set(spec) - {"filter", "must", "must_not"}
        if unknown:
            raise SearchError(f"bool clauses not supported by the stand-in: {sorted(unknown)}")
        wanted = [*spec.get("filter", []), *spec.get("must", [])]
        return all(_matches(doc, q) for q in wanted) and not any(_matches(doc, q) for q in spec.get("must_not", []))
    if kind == "exists":
        return _value(doc, spec["field"]) is not None
    if kind == "terms":
        ((field, values),) = spec.items()
        return _value(doc, field) in values
    if kind == "range":
        ((field, bounds),) = spec.items()
        value = _comparable(_value(doc, field))
        if value is None:
            return False
        checks = {"gt": value.__gt__, "gte": value.__ge__, "lt": value.__lt__, "lte": value.__le__}
        return all(checks[op](float(bound)) for op, bound in bounds.items() if op != "format")
    raise SearchError(f"query type not supported by the stand-in: {kind}")


def _field_type(owner: Any, index: str, field: str) -> dict[str, Any]:
    template = owner.template_for(index) or {}
    node: dict[str, Any] = template.get("template", {}).get("mappings", {})
    for part in field.split("."):
        node = node.get("properties", {}).get(part, {})
    return node


def _doc_value(owner: Any, index: str, doc: dict[str, Any], field: str) -> Any:
    value = _value(doc, field)
    spec = _field_type(owner, index, field)
    if value is not None and spec.get("type") == "scaled_float":
        factor = spec["scaling_factor"]
        return round(value * factor) / factor
    return value


def _aggregate(owner: Any, docs: list[tuple[str, dict[str, Any]]], aggs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in aggs.items():
        sub = spec.get("aggs") or spec.get("aggregations") or {}
        kinds = set(spec) - {"aggs", "aggregations"}
        if len(kinds) != 1:
            raise SearchError(f"aggregation {name} must have exactly one type")
        kind = kinds.pop()
        body = spec[kind]
        if kind == "filter":
            inside = [(i, d) for i, d in docs if _matches(d, body)]
            out[name] = {"doc_count": len(inside), **_aggregate(owner, inside, sub)}
        elif kind in ("max", "value_count"):
            values = [v for i, d in docs if (v := _doc_value(owner, i, d, body["field"])) is not None]
            if kind == "max":
                out[name] = {"value": max(values) if values else None}
            else:
                out[name] = {"value": len(values)}
        else:
            raise SearchError(f"aggregation type not supported by the stand-in: {kind}")
    return out


def search(owner: Any, pattern: str, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    """The response body of ``GET/POST /<pattern>/_search``."""
    indices = [i for i in owner.docs if any(fnmatch.fnmatchcase(i, p) for p in pattern.split(","))]
    query = body.get("query", {"match_all": {}})
    docs = [(i, d) for i in indices for d in owner.docs[i].values() if _matches(d, query)]
    size = int(body.get("size", params.get("size", 10)))
    start = int(body.get("from", params.get("from", 0)))
    hits = docs
    sort_field = None
    if body.get("sort"):
        ((sort_field, order),) = body["sort"][0].items()
        descending = (order.get("order") if isinstance(order, dict) else order) == "desc"
        hits = sorted(
            (h for h in docs if _value(h[1], sort_field) is not None),
            key=lambda h: _value(h[1], sort_field),
            reverse=descending,
        )
    page = [
        {
            "_index": i,
            "_id": d["event"]["id"],
            "_score": None,
            **({"sort": [_value(d, sort_field)]} if sort_field else {}),
        }
        for i, d in hits[start : start + size]
    ]
    response: dict[str, Any] = {
        "took": 1,
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": len(docs), "relation": "eq"}, "max_score": None, "hits": page},
    }
    if body.get("aggs") or body.get("aggregations"):
        response["aggregations"] = _aggregate(owner, docs, body.get("aggs") or body.get("aggregations"))
    return response
