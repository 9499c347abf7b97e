"""``_search`` for the Elasticsearch stand-in: the query and aggregation subset trayllm sends, evaluated over
the stored documents the way Elasticsearch does, and a 400 for anything outside that subset.

Queries: ``match_all``, ``bool`` (``filter`` / ``must`` / ``must_not``), ``range`` (``gt/gte/lt/lte``,
dates as ``epoch_millis``), ``exists``, ``terms``. Aggregations: ``filter`` (with sub-aggregations),
``max`` and ``value_count``. ``scaled_float`` fields come back at their mapping's resolution, as doc
values do. Hits: ``size``, ``from``, ``sort`` on one or more fields (the sort values are doc values: numbers,
keywords, dates as epoch millis; a document without the field sorts last, as ``missing: _last`` does) and
``search_after``.

Its limits are Elasticsearch's, so code that works here works on a cluster: ``from + size`` over
``index.max_result_window`` is refused with the cluster's 400 body (``ResultWindowTooLarge``), and so are
``search_after`` without a sort, with a ``from``, or with a different number of values than the sort.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime
from typing import Any

MAX_RESULT_WINDOW = 10_000  # index.max_result_window's default


class SearchError(ValueError):
    """A search Elasticsearch would refuse, or one the stand-in does not implement: it answers 400, never a
    made-up result."""

    kind = "parsing_exception"

    def body(self) -> dict[str, Any]:
        """The 400 response body."""
        reason = str(self)
        return {"error": {"root_cause": [{"type": self.kind, "reason": reason}], "type": self.kind, "reason": reason}}


class InvalidRequest(SearchError):
    """A request that fails Elasticsearch's validation before it reaches a shard."""

    kind = "action_request_validation_exception"

    def __init__(self, problem: str) -> None:
        super().__init__(f"Validation Failed: 1: {problem};")


class ResultWindowTooLarge(SearchError):
    """``from + size`` over ``index.max_result_window``: every shard refuses the query phase, and the answer is
    the ``search_phase_execution_exception`` that wraps their ``illegal_argument_exception``."""

    kind = "illegal_argument_exception"

    def __init__(self, index: str, limit: int, asked: int) -> None:
        super().__init__(
            f"Result window is too large, from + size must be less than or equal to: [{limit}] but was [{asked}]. "
            "See the scroll api for a more efficient way to request large data sets. This limit can be set by "
            "changing the [index.max_result_window] index level setting."
        )
        self.index = index

    def body(self) -> dict[str, Any]:
        cause = {"type": self.kind, "reason": str(self)}
        return {
            "error": {
                "root_cause": [cause],
                "type": "search_phase_execution_exception",
                "reason": "all shards failed",
                "phase": "query",
                "grouped": True,
                "failed_shards": [{"shard": 0, "index": self.index, "node": "standin-node", "reason": cause}],
                "caused_by": {**cause, "caused_by": cause},
            },
            "status": 400,
        }


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


def _doc_value(owner: Any, index: str, doc: dict[str, Any], field: str, spec: dict[str, Any] | None = None) -> Any:
    value = _value(doc, field)
    spec = _field_type(owner, index, field) if spec is None else spec
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


def _sort_value(owner: Any, index: str, doc: dict[str, Any], field: str, spec: dict[str, Any]) -> Any:
    """What Elasticsearch returns in ``sort`` for ``field`` (mapped as ``spec``): the doc value, dates as epoch
    millis."""
    value = _doc_value(owner, index, doc, field, spec)
    if value is not None and spec.get("type") == "date":
        millis = _comparable(value)
        return None if millis is None else int(millis)
    return value


def _sort_spec(body: dict[str, Any]) -> list[tuple[str, bool]]:
    """``[(field, descending), ...]`` from the request's ``sort``."""
    spec = []
    for entry in body.get("sort") or []:
        if isinstance(entry, str):
            spec.append((entry, False))
            continue
        ((field, order),) = entry.items()
        spec.append((field, (order.get("order") if isinstance(order, dict) else order) == "desc"))
    return spec


def _compare(a: list[Any], b: list[Any], descending: list[bool]) -> int:
    """Elasticsearch's order of two sort-value lists: field by field, a missing value last either way."""
    for x, y, desc in zip(a, b, descending, strict=True):
        if x == y:
            continue
        if x is None or y is None:
            return 1 if x is None else -1
        before = x < y
        return (1 if before else -1) if desc else (-1 if before else 1)
    return 0


def search(owner: Any, pattern: str, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    """The response body of ``GET/POST /<pattern>/_search``; raises ``SearchError`` for a 400."""
    indices = [i for i in owner.docs if any(fnmatch.fnmatchcase(i, p) for p in pattern.split(","))]
    query = body.get("query", {"match_all": {}})
    docs = [(i, d) for i in indices for d in owner.docs[i].values() if _matches(d, query)]
    size = int(body.get("size", params.get("size", 10)))
    start = int(body.get("from", params.get("from", 0)))
    limit = getattr(owner, "max_result_window", MAX_RESULT_WINDOW)
    if start + size > limit:
        raise ResultWindowTooLarge(indices[0] if indices else pattern, limit, start + size)
    sort = _sort_spec(body)
    after = body.get("search_after")
    if after is not None:
        if not sort:
            raise InvalidRequest("[search_after] requires a sort")  # needs the sort values to continue from
        if start > 0:
            raise InvalidRequest("[from] parameter must be set to 0 when [search_after] is used")
        if len(after) != len(sort):
            raise SearchError(f"search_after has {len(after)} value(s) but sort has {len(sort)}.")
    specs = {(i, f): _field_type(owner, i, f) for i in indices for f, _ in sort}
    keyed = [(i, d, [_sort_value(owner, i, d, f, specs[i, f]) for f, _ in sort]) for i, d in docs]
    if sort:
        descending = [desc for _, desc in sort]
        for k, desc in reversed(list(enumerate(descending))):  # stable sorts, the last key first
            keyed.sort(key=lambda h: ((h[2][k] is None) != desc, h[2][k]), reverse=desc)  # missing last
        if after is not None:
            keyed = [h for h in keyed if _compare(h[2], after, descending) > 0]
    page = [
        {"_index": i, "_id": d["event"]["id"], "_score": None, **({"sort": key} if sort else {})}
        for i, d, key in keyed[start : start + size]
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
