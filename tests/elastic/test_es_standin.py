"""The stand-in keeps Elasticsearch's limits (issue 18): a result window past ``index.max_result_window`` gets the
cluster's 400 body, ``search_after`` pages through ties without skipping or repeating, a body over
``http.max_content_length`` gets a bodiless 413, and a field of the wrong type is a per-item bulk error."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from es_standin import ElasticStandIn
from slo_records import record

from trayllm.config import load_settings
from trayllm.elastic.connection import ElasticTarget
from trayllm.elastic.templates import install

INDEX = "logs-trayllm.requests-default"
TOO_LARGE = (
    "Result window is too large, from + size must be less than or equal to: [{limit}] but was [{asked}]. "
    "See the scroll api for a more efficient way to request large data sets. This limit can be set by "
    "changing the [index.max_result_window] index level setting."
)


@pytest.fixture
def standin() -> ElasticStandIn:
    server = ElasticStandIn(max_result_window=50, max_content_length=4_000)
    install(ElasticTarget.from_settings(load_settings({"es_url": server.url}, environ={})).client(), server.url)
    server.docs[INDEX] = {doc["event"]["id"]: doc for doc in (record(i, ttft_s=0.1 * (i % 4)) for i in range(60))}
    yield server
    server.close()


def post(standin: ElasticStandIn, path: str, body: bytes, kind: str = "json") -> tuple[int, bytes]:
    request = urllib.request.Request(
        standin.url + path, data=body, method="POST", headers={"Content-Type": f"application/{kind}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def search(standin: ElasticStandIn, body: dict[str, Any]) -> tuple[int, Any]:
    status, data = post(standin, "/logs-trayllm.requests-*/_search", json.dumps(body).encode())
    return status, json.loads(data)


def test_from_plus_size_past_the_result_window_is_elasticsearchs_400(standin: ElasticStandIn) -> None:
    assert search(standin, {"from": 49, "size": 1})[0] == 200  # from + size = the limit: allowed
    status, body = search(standin, {"from": 45, "size": 6})
    cause = {"type": "illegal_argument_exception", "reason": TOO_LARGE.format(limit=50, asked=51)}
    assert status == 400
    assert body["status"] == 400 and body["error"]["root_cause"] == [cause]
    assert (body["error"]["type"], body["error"]["reason"], body["error"]["phase"]) == (
        "search_phase_execution_exception",
        "all shards failed",
        "query",
    )
    assert body["error"]["failed_shards"][0]["reason"] == cause and body["error"]["caused_by"]["type"] == cause["type"]
    assert search(standin, {"size": 51})[0] == 400  # size alone counts too


def test_search_after_pages_through_ties_once_each_and_refuses_what_elasticsearch_refuses(
    standin: ElasticStandIn,
) -> None:
    sort = [{"llm.ttft.ns": {"order": "desc"}}, {"event.id": {"order": "desc"}}]
    seen: list[list[Any]] = []
    after: list[Any] | None = None
    while True:
        page = {"size": 7, "sort": sort, **({"search_after": after} if after else {})}
        status, body = search(standin, page)
        hits = body["hits"]["hits"]
        if not hits:
            break
        seen += [hit["sort"] for hit in hits]
        after = hits[-1]["sort"]
    expected = sorted(
        ([doc["llm"]["ttft"]["ns"], doc["event"]["id"]] for doc in standin.docs[INDEX].values()), reverse=True
    )
    assert seen == expected  # 60 hits, 4 distinct values: every page boundary but the last falls in a tie
    status, body = search(standin, {"from": 1, "size": 1, "sort": sort, "search_after": after})
    assert status == 400 and body["error"]["type"] == "action_request_validation_exception"
    assert "[from] parameter must be set to 0 when [search_after] is used" in body["error"]["reason"]
    assert search(standin, {"size": 1, "sort": sort[:1], "search_after": after})[0] == 400  # 2 values, 1 sort


def test_a_body_over_max_content_length_is_a_bodiless_413_and_the_largest_bulk_is_recorded(
    standin: ElasticStandIn,
) -> None:
    action = json.dumps({"create": {"_index": INDEX, "_id": "big"}}).encode()
    line = json.dumps(record(999, ttft_s=0.1) | {"message": "x" * 4_000}).encode()
    big = action + b"\n" + line + b"\n"
    assert post(standin, "/_bulk", big, "x-ndjson") == (413, b"")
    assert standin.max_bulk_body == len(big) and "big" not in standin.ids(INDEX)
    status, data = post(standin, "/_bulk", action + b"\n" + json.dumps(record(999)).encode() + b"\n", "x-ndjson")
    assert status == 200 and json.loads(data)["errors"] is False and standin.max_bulk_body == len(big)


def test_a_field_of_the_wrong_type_is_a_400_bulk_item_shaped_like_elasticsearchs(standin: ElasticStandIn) -> None:
    doc = record(1000)
    doc["event"]["duration"] = "slow"
    action = json.dumps({"create": {"_index": INDEX, "_id": "bad"}}).encode()
    status, data = post(standin, "/_bulk", action + b"\n" + json.dumps(doc).encode() + b"\n", "x-ndjson")
    (item,) = json.loads(data)["items"]
    assert status == 200 and item["create"]["status"] == 400
    assert item["create"]["error"] == {
        "type": "document_parsing_exception",
        "reason": "failed to parse field [event.duration] of type [long] in document with id 'bad'. "
        "Preview of field's value: 'slow'",
        "caused_by": {"type": "illegal_argument_exception", "reason": 'For input string: "slow"'},
    }
