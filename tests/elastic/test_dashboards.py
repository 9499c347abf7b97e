"""The Kibana saved objects trayllm ships, checked offline, and their import, checked against a wire-level stand-in.

The structural tests catch what a hand-edited NDJSON gets wrong and Kibana only reports after import (or not
at all: a Lens panel on a misspelled field imports fine and shows "field not found"): lines that do not parse,
references to nothing, ``*JSON`` attributes that are objects, fields missing from the record schema, version
stamps newer than Kibana 8.19, panels the issue asked for that are not there.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kibana_standin import KibanaStandin, Scripted

from trayllm.elastic import dashboards_build
from trayllm.elastic.kibana import ImportResult, dashboards_ndjson, import_dashboards
from trayllm.errors import ElasticError, TrayllmError
from trayllm.slo.objectives import CLIENT_FAULT, DEFAULT_OBJECTIVES
from trayllm.telemetry.schema import ALERTS, REQUESTS

# Read at import time: the autouse fixture in tests/conftest.py removes every TRAYLLM_* variable for each test.
KIBANA_URL = os.environ.get("TRAYLLM_KIBANA_URL", "")
KIBANA_AUTH = {
    "api_key": os.environ.get("TRAYLLM_KIBANA_API_KEY") or None,
    "username": os.environ.get("TRAYLLM_KIBANA_USERNAME") or None,
    "password": os.environ.get("TRAYLLM_KIBANA_PASSWORD") or None,
    "ca_file": os.environ.get("TRAYLLM_KIBANA_CA_FILE") or None,
}

NDJSON = dashboards_ndjson()
OBJECTS: list[dict[str, Any]] = [json.loads(line) for line in NDJSON.decode("utf-8").splitlines()]
BY_KEY = {(o["type"], o["id"]): o for o in OBJECTS}
LENSES = [o for o in OBJECTS if o["type"] == "lens"]
DASHBOARD = BY_KEY[("dashboard", dashboards_build.DASHBOARD_ID)]
SCHEMAS = {dashboards_build.REQUESTS_VIEW: REQUESTS, dashboards_build.ALERTS_VIEW: ALERTS}
OBJECTIVES = {o.name: o for o in DEFAULT_OBJECTIVES}
KIBANA_TARGET = (8, 19, 0)
NUMERIC = {"long", "float", "scaled_float"}


def version(text: str) -> tuple[int, ...]:
    assert re.fullmatch(r"\d+\.\d+\.\d+", text), text
    return tuple(int(p) for p in text.split("."))


# --- reading Lens state ---------------------------------------------------------------------------------


def layers(lens: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]


def columns(lens: dict[str, Any]) -> list[dict[str, Any]]:
    return [col for layer in layers(lens).values() for col in layer["columns"].values()]


def view_of(lens: dict[str, Any], layer_id: str) -> str:
    (ref,) = [r for r in lens["references"] if r["name"] == f"indexpattern-datasource-layer-{layer_id}"]
    assert ref["type"] == "index-pattern"
    return ref["id"]


def views(lens: dict[str, Any]) -> set[str]:
    return {view_of(lens, layer_id) for layer_id in layers(lens)}


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_KQL_FIELD = re.compile(r"([@A-Za-z_][\w.@]*)\s*:")
_FORMULA_KQL = re.compile(r"kql='((?:[^'\\]|\\.)*)'")


def kql_fields(query: str) -> set[str]:
    """Field names of a KQL query (``field : value``), quoted values left out."""
    return set(_KQL_FIELD.findall(_QUOTED.sub('""', query)))


def formula_fields(formula: str) -> set[str]:
    """Fields a Lens formula names: inside ``kql='…'`` and as a function's first argument."""
    found = set().union(*(kql_fields(k) for k in _FORMULA_KQL.findall(formula)))
    rest = _FORMULA_KQL.sub("", formula)
    return found | set(re.findall(r"\w+\(\s*([@A-Za-z_][\w.@]*)\s*[,)]", rest))


def column_fields(col: dict[str, Any]) -> set[str]:
    found = set()
    if col.get("sourceField") not in (None, "___records___"):
        found.add(col["sourceField"])
    if col.get("filter"):
        found |= kql_fields(col["filter"]["query"])
    params = col.get("params") or {}
    if "formula" in params:
        found |= formula_fields(params["formula"])
    found |= set(params.get("secondaryFields") or [])
    if params.get("sortField"):
        found.add(params["sortField"])
    return found


def lens_fields(lens: dict[str, Any]) -> dict[str, set[str]]:
    """Every field the Lens object names, per data view it reads."""
    state = lens["attributes"]["state"]
    used: dict[str, set[str]] = {}
    for layer_id, layer in layers(lens).items():
        fields = used.setdefault(view_of(lens, layer_id), set())
        for col in layer["columns"].values():
            fields |= column_fields(col)
        fields |= kql_fields(state["query"]["query"])  # the query applies to every layer
        for f in state["filters"]:
            fields |= {f["meta"]["key"]} if f.get("meta", {}).get("key") else set()
    return used


def json_attributes(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every attribute whose name ends in JSON, anywhere under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("JSON"):
                yield f"{path}.{key}", value
            yield from json_attributes(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from json_attributes(value, f"{path}[{i}]")


def panels() -> list[dict[str, Any]]:
    return json.loads(DASHBOARD["attributes"]["panelsJSON"])


def dashboard_lenses() -> list[dict[str, Any]]:
    refs = {r["name"]: r for r in DASHBOARD["references"]}
    return [BY_KEY[("lens", refs[f"{p['panelIndex']}:{p['panelRefName']}"]["id"])] for p in panels()]


# --- the file -------------------------------------------------------------------------------------------


def test_committed_file_is_the_generators_output():
    assert dashboards_build.ASSET.read_text(encoding="utf-8") == dashboards_build.render(), (
        "assets/dashboards.ndjson is stale: run python -m trayllm.elastic.dashboards_build"
    )


def test_the_file_ships_as_package_data():
    assert dashboards_build.ASSET.read_bytes() == NDJSON


def test_every_line_is_one_saved_object():
    text = NDJSON.decode("utf-8")
    assert text.endswith("\n") and "\n\n" not in text
    for line in text.splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict)
        assert {"type", "id", "attributes", "references"} <= obj.keys(), line[:80]
        assert isinstance(obj["attributes"], dict) and isinstance(obj["references"], list)
    assert len(BY_KEY) == len(OBJECTS), "duplicate (type, id)"
    assert sorted(o["type"] for o in OBJECTS).count("index-pattern") == 2
    assert [o["type"] for o in OBJECTS].count("dashboard") == 1


def test_every_reference_resolves_to_an_object_in_the_file():
    for obj in OBJECTS:
        names = [r["name"] for r in obj["references"]]
        assert len(names) == len(set(names)), f"{obj['id']}: duplicate reference names"
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in BY_KEY, f"{obj['type']} {obj['id']} -> {ref}"


def test_json_attributes_are_strings_holding_json():
    found = 0
    for obj in OBJECTS:
        for path, value in json_attributes(obj["attributes"]):
            found += 1
            assert isinstance(value, str), f"{obj['id']}{path} must be a JSON string"
            json.loads(value)
        if obj["type"] == "index-pattern":  # the data view's maps are JSON strings too
            for key in ("fields", "fieldFormatMap", "fieldAttrs", "runtimeFieldMap", "sourceFilters", "typeMeta"):
                assert isinstance(obj["attributes"][key], str), f"{obj['id']}.{key}"
                json.loads(obj["attributes"][key])
    assert found >= 3  # panelsJSON, optionsJSON, searchSourceJSON


def test_version_stamps_are_not_newer_than_kibana_8_19():
    for obj in OBJECTS:
        stamps = [
            obj["coreMigrationVersion"],
            obj["typeMigrationVersion"],
            *(obj.get("migrationVersion") or {}).values(),
        ]
        for stamp in stamps:
            assert version(stamp) <= KIBANA_TARGET, f"{obj['type']} {obj['id']}: {stamp}"
    for panel in panels():
        assert version(panel["version"]) <= KIBANA_TARGET


def test_data_views_cover_both_streams_by_time():
    requests = BY_KEY[("index-pattern", dashboards_build.REQUESTS_VIEW)]["attributes"]
    alerts = BY_KEY[("index-pattern", dashboards_build.ALERTS_VIEW)]["attributes"]
    assert requests["title"] == "logs-trayllm.requests-*" and alerts["title"] == "logs-trayllm.alerts-*"
    assert REQUESTS.index_pattern.startswith(requests["title"][:-1])
    assert ALERTS.index_pattern.startswith(alerts["title"][:-1])
    assert requests["timeFieldName"] == alerts["timeFieldName"] == "@timestamp"


def test_nanosecond_fields_have_a_duration_format():
    formats = json.loads(BY_KEY[("index-pattern", dashboards_build.REQUESTS_VIEW)]["attributes"]["fieldFormatMap"])
    for field in ("event.duration", "llm.ttft.ns"):
        assert formats[field]["id"] == "duration"
        assert formats[field]["params"]["inputFormat"] == "nanoseconds"
    assert formats["llm.vram.peak.pct"]["id"] == "percent"


def test_data_view_settings_name_schema_fields():
    for view_id, schema in SCHEMAS.items():
        attributes = BY_KEY[("index-pattern", view_id)]["attributes"]
        named = json.loads(attributes["fieldFormatMap"]).keys() | json.loads(attributes["fieldAttrs"]).keys()
        assert named <= schema.fields.keys(), named - schema.fields.keys()


def test_every_field_used_exists_in_its_data_views_schema():
    for lens in LENSES:
        for view_id, fields in lens_fields(lens).items():
            schema = SCHEMAS[view_id]
            unknown = fields - schema.fields.keys() - {"@timestamp"}
            assert not unknown, f"{lens['id']} uses {sorted(unknown)}, not in the {schema.name} schema"


def test_every_column_fits_its_fields_type():
    for lens in LENSES:
        for layer_id, layer in layers(lens).items():
            schema = SCHEMAS[view_of(lens, layer_id)]
            for col in layer["columns"].values():
                field = col.get("sourceField")
                if field in (None, "___records___"):
                    continue
                es_type = schema.fields[field].es_type
                op = col["operationType"]
                if op == "date_histogram":
                    assert es_type == "date", (lens["id"], field)
                elif op == "terms":
                    assert es_type in ("keyword", "constant_keyword"), (lens["id"], field)
                else:
                    assert es_type in NUMERIC, (lens["id"], op, field)


def test_lens_objects_are_internally_consistent():
    for lens in LENSES:
        state = lens["attributes"]["state"]
        assert lens["attributes"]["visualizationType"] in ("lnsXY", "lnsDatatable")
        layer_ids = set(layers(lens))
        assert {r["name"] for r in lens["references"]} == {f"indexpattern-datasource-layer-{i}" for i in layer_ids}
        for layer in layers(lens).values():
            assert set(layer["columnOrder"]) == set(layer["columns"]) and len(layer["columnOrder"]) == len(
                layer["columns"]
            )
            for col in layer["columns"].values():
                assert set(col.get("references", [])) <= set(layer["columns"]), col
        vis = state["visualization"]
        vis_layers = vis.get("layers", [vis])  # a datatable has one layer, no list
        assert {v["layerId"] for v in vis_layers} == layer_ids, lens["id"]
        for v in vis_layers:
            cols = layers(lens)[v["layerId"]]["columns"]
            used = [*v.get("accessors", []), *(c["columnId"] for c in v.get("columns", []))]
            used += [v[k] for k in ("xAccessor", "splitAccessor") if v.get(k)]
            assert used and set(used) <= set(cols), (lens["id"], used)
            for y in v.get("yConfig", []):
                assert y["forAccessor"] in v["accessors"]


def test_formula_columns_carry_the_columns_lens_derives():
    formulas = [c for lens in LENSES for c in columns(lens) if c["operationType"] == "formula"]
    assert formulas
    for lens in LENSES:
        for layer in layers(lens).values():
            for col_id, col in layer["columns"].items():
                if col["operationType"] != "formula":
                    continue
                assert col["params"]["isFormulaBroken"] is False
                (math_id,) = col["references"]
                math = layer["columns"][math_id]
                assert math["operationType"] == "math" and math_id.startswith(col_id + "X")
                assert math["params"]["tinymathAst"]["text"] == col["params"]["formula"]
                assert set(math["params"]["tinymathAst"]["args"]) == set(math["references"])


# --- the dashboard --------------------------------------------------------------------------------------


def test_dashboard_shows_every_lens_once_without_overlaps():
    attributes = DASHBOARD["attributes"]
    assert attributes["title"] == "trayllm"
    assert set(attributes) <= {
        "title",
        "description",
        "kibanaSavedObjectMeta",
        "timeRestore",
        "timeFrom",
        "timeTo",
        "refreshInterval",
        "controlGroupInput",
        "panelsJSON",
        "optionsJSON",
        "hits",
        "version",
    }  # Kibana's dashboard create schema forbids anything else
    shown = dashboard_lenses()
    assert sorted(lens["id"] for lens in shown) == sorted(lens["id"] for lens in LENSES)
    cells: set[tuple[int, int]] = set()
    for panel in panels():
        grid = panel["gridData"]
        assert panel["type"] == "lens" and grid["i"] == panel["panelIndex"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 48
        area = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, f"{panel['panelIndex']} overlaps another panel"
        cells |= area


def _percentiles(lens: dict[str, Any], field: str) -> set[float]:
    return {
        c["params"]["percentile"]
        for c in columns(lens)
        if c["operationType"] == "percentile" and c["sourceField"] == field
    }


def _reference_values(lens: dict[str, Any]) -> set[float]:
    return {float(c["params"]["value"]) for c in columns(lens) if c["operationType"] == "static_value"}


def _splits_by(lens: dict[str, Any], field: str) -> bool:
    return any(c["operationType"] == "terms" and c["sourceField"] == field for c in columns(lens))


def _over_time(lens: dict[str, Any]) -> bool:
    return any(c["operationType"] == "date_histogram" for c in columns(lens))


def _requests(lens: dict[str, Any]) -> bool:
    return views(lens) == {dashboards_build.REQUESTS_VIEW}


ttft_ns = OBJECTIVES["first_token_latency_p99"].threshold / OBJECTIVES["first_token_latency_p99"].scale
REQUIRED_PANELS = {
    "requests over time by event.outcome": lambda lens: (
        _requests(lens) and _over_time(lens) and _splits_by(lens, "event.outcome")
    ),
    "P50/P95/P99 of event.duration": lambda lens: (
        _requests(lens) and _percentiles(lens, "event.duration") == {50, 95, 99}
    ),
    "P50/P95/P99 of llm.ttft.ns": lambda lens: _requests(lens) and _percentiles(lens, "llm.ttft.ns") == {50, 95, 99},
    "tokens/s": lambda lens: (
        _requests(lens) and any(c.get("sourceField") == "llm.tokens_per_second" for c in columns(lens))
    ),
    "max peak VRAM against the 80 % line": lambda lens: (
        _requests(lens)
        and any(c["operationType"] == "max" and c["sourceField"] == "llm.vram.peak.pct" for c in columns(lens))
        and _reference_values(lens) == {OBJECTIVES["peak_vram"].threshold}
    ),
    "error rate against the 0.1 % budget line": lambda lens: (
        _requests(lens)
        and any(c["operationType"] == "formula" and "event.outcome" in column_fields(c) for c in columns(lens))
        and _reference_values(lens) == {OBJECTIVES["error_rate"].threshold}
    ),
    "requests by user.name": lambda lens: _requests(lens) and _splits_by(lens, "user.name"),
    "requests by llm.model.version": lambda lens: _requests(lens) and _splits_by(lens, "llm.model.version"),
    "alerts timeline: rule.name x event.action over time": lambda lens: (
        views(lens) == {dashboards_build.ALERTS_VIEW}
        and _over_time(lens)
        and _splits_by(lens, "rule.name")
        and "event.action" in set().union(*lens_fields(lens).values())
    ),
}


@pytest.mark.parametrize("what", REQUIRED_PANELS)
def test_dashboard_has_the_panel_the_issue_asks_for(what):
    assert any(REQUIRED_PANELS[what](lens) for lens in dashboard_lenses()), f"no panel shows {what}"


def test_error_rate_counts_what_the_error_budget_counts():
    (lens,) = [lens for lens in LENSES if any(c["operationType"] == "formula" for c in columns(lens))]
    query = lens["attributes"]["state"]["query"]["query"]
    match = re.fullmatch(r"not error\.type : \(([\w ]+)\)", query)
    assert match, query
    assert set(match.group(1).split(" or ")) == set(CLIENT_FAULT)
    (formula,) = [c for c in columns(lens) if c["operationType"] == "formula"]
    assert formula["params"]["formula"] == "count(kql='event.outcome : \"failure\"') / count()"
    assert formula["params"]["format"]["id"] == "percent"


def test_first_token_latency_shows_its_objective():
    (lens,) = [lens for lens in LENSES if _percentiles(lens, "llm.ttft.ns")]
    assert _reference_values(lens) == {ttft_ns}


# --- import_dashboards against the stand-in -------------------------------------------------------------


@pytest.fixture
def kibana() -> Iterator[KibanaStandin]:
    with KibanaStandin() as standin:
        yield standin


def test_import_puts_every_object_into_kibana(kibana: KibanaStandin):
    result = import_dashboards(kibana.url)
    assert isinstance(result, ImportResult)
    assert result.ok and result.errors == [] and result.success_count == len(OBJECTS)
    assert set(result.imported) == set(BY_KEY)
    assert {(t, i) for (_, t, i) in kibana.store} == set(BY_KEY)
    (request,) = kibana.requests
    assert request.path == "/api/saved_objects/_import" and request.query["overwrite"] == ["true"]
    assert request.headers["kbn-xsrf"] == "true"
    assert request.filename.endswith(".ndjson") and request.ndjson == NDJSON
    assert result.summary() == f"imported {len(OBJECTS)} saved objects"


def test_a_second_import_overwrites(kibana: KibanaStandin):
    assert import_dashboards(kibana.url).ok
    again = import_dashboards(kibana.url)
    assert again.ok and again.success_count == len(OBJECTS)


def test_import_into_a_space_with_an_api_key():
    with KibanaStandin(api_key="c2VjcmV0") as kibana:
        result = import_dashboards(kibana.url + "/", api_key="c2VjcmV0", space="team")
        assert result.ok
        assert kibana.requests[0].path == "/s/team/api/saved_objects/_import"
        assert kibana.requests[0].headers["authorization"] == "ApiKey c2VjcmV0"
        assert {s for (s, _, _) in kibana.store} == {"team"}


def test_import_with_a_user_name_and_password():
    with KibanaStandin(username="elastic", password="changeme") as kibana:
        assert import_dashboards(kibana.url, username="elastic", password="changeme", space="default").ok
        assert kibana.requests[0].path == "/api/saved_objects/_import"


def test_per_object_errors_come_back_though_kibana_answers_200(kibana: KibanaStandin):
    bad_lens = {
        **BY_KEY[("lens", "trayllm-latency")],
        "id": "orphan",
        "references": [{"type": "index-pattern", "id": "no-such-view", "name": "indexpattern-datasource-layer-x"}],
    }
    unknown_type = {"type": "widget", "id": "w1", "attributes": {"title": "A widget"}, "references": []}
    bad_dashboard = {
        **DASHBOARD,
        "id": "broken",
        "attributes": {**DASHBOARD["attributes"], "panelsJSON": panels(), "title": "Broken"},
    }
    newer = {
        **BY_KEY[("index-pattern", dashboards_build.ALERTS_VIEW)],
        "id": "from-the-future",
        "typeMigrationVersion": "8.99.0",
    }
    objects = [*OBJECTS, bad_lens, unknown_type, bad_dashboard, newer]
    ndjson = "".join(json.dumps(o) + "\n" for o in objects).encode()

    result = import_dashboards(kibana.url, ndjson)

    assert not result.ok and result.success_count == len(OBJECTS)
    errors = {(e.type, e.id): e for e in result.errors}
    assert set(errors) == {
        ("lens", "orphan"),
        ("widget", "w1"),
        ("dashboard", "broken"),
        ("index-pattern", "from-the-future"),
    }
    orphan = errors[("lens", "orphan")]
    assert orphan.error_type == "missing_references"
    assert orphan.missing_references == (("index-pattern", "no-such-view"),)
    assert orphan.title == BY_KEY[("lens", "trayllm-latency")]["attributes"]["title"]
    assert errors[("widget", "w1")].error_type == "unsupported_type"
    assert errors[("dashboard", "broken")].error_type == "unknown"
    assert "panelsJSON" in errors[("dashboard", "broken")].message
    assert "more recent version" in errors[("index-pattern", "from-the-future")].message
    for error in result.errors:
        assert "\n" not in str(error) and error.id in str(error)
    assert "missing index-pattern 'no-such-view'" in str(orphan)
    assert result.summary() == f"imported {len(OBJECTS)} saved objects, 4 failed"


def _one_line_error(excinfo: pytest.ExceptionInfo[ElasticError]) -> str:
    message = str(excinfo.value)
    assert isinstance(excinfo.value, TrayllmError) and excinfo.value.message == message
    assert "\n" not in message and "\t" not in message and len(message) < 500
    return message


def test_refused_credentials_are_one_line_that_names_the_fix():
    with KibanaStandin(username="elastic", password="right") as kibana:
        with pytest.raises(ElasticError) as excinfo:
            import_dashboards(kibana.url, username="elastic", password="wrong")
        message = _one_line_error(excinfo)
        assert "401" in message and "security_exception" in message and "user name and password" in message
        with pytest.raises(ElasticError, match="401"):
            import_dashboards(kibana.url)  # no credentials at all


def test_connection_refused_is_one_line_that_names_the_fix():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ElasticError) as excinfo:
        import_dashboards(f"http://127.0.0.1:{port}", timeout=5)
    message = _one_line_error(excinfo)
    assert message.startswith(f"cannot reach Kibana at http://127.0.0.1:{port}") and "is Kibana running" in message


@pytest.mark.parametrize(
    ("scripted", "expected"),
    [
        (
            Scripted(
                500,
                b'{"statusCode":500,"error":"Internal Server Error","message":"An internal server error occurred."}',
            ),
            "failed (HTTP 500: An internal server error occurred.); see Kibana's log",
        ),
        (
            Scripted(503, b"Kibana server is not ready yet", "text/plain"),
            "not ready (503: Kibana server is not ready yet); wait",
        ),
        (
            Scripted(200, b"<html><body>Please log in</body></html>", "text/html"),
            "answered HTTP 200 with text/html, not Kibana's import result",
        ),
        (Scripted(200, b'{"acknowledged": true}'), "answered HTTP 200 with application/json, not Kibana's"),
        (
            Scripted(
                403, b'{"statusCode":403,"error":"Forbidden","message":"Unable to bulk_create index-pattern,lens"}'
            ),
            "may not import saved objects (403: Unable to bulk_create index-pattern,lens); "
            "give it the Kibana privilege",
        ),
        (
            Scripted(
                405,
                b'{"error":"Incorrect HTTP method for uri [/api/saved_objects/_import]"}',
                headers={"X-Elastic-Product": "Elasticsearch"},
            ),
            "is Elasticsearch, not Kibana",
        ),
    ],
)
def test_answers_that_are_not_an_import_result_raise_one_line(kibana: KibanaStandin, scripted, expected):
    kibana.script.append(scripted)
    with pytest.raises(ElasticError) as excinfo:
        import_dashboards(kibana.url)
    assert expected in _one_line_error(excinfo)


def test_an_unknown_space_is_reported(kibana: KibanaStandin):
    with pytest.raises(ElasticError) as excinfo:
        import_dashboards(kibana.url, space="nope")
    assert "404" in _one_line_error(excinfo) and "space id" in str(excinfo.value)


def test_the_standin_refuses_what_kibana_refuses(kibana: KibanaStandin):
    """Without these checks the success tests above would prove less: a request without kbn-xsrf, with a
    file not named *.ndjson or without the multipart field gets Kibana's 400."""
    url = kibana.url + "/api/saved_objects/_import"
    no_xsrf = httpx.post(url, files={"file": ("d.ndjson", NDJSON)})
    assert no_xsrf.status_code == 400 and "kbn-xsrf" in no_xsrf.json()["message"]
    wrong_name = httpx.post(url, files={"file": ("d.json", NDJSON)}, headers={"kbn-xsrf": "true"})
    assert wrong_name.status_code == 400 and wrong_name.json()["message"] == "Invalid file extension .json"
    no_file = httpx.post(url, files={"other": ("d.ndjson", NDJSON)}, headers={"kbn-xsrf": "true"})
    assert no_file.status_code == 400
    assert not kibana.store


def test_a_slow_kibana_times_out_in_one_line(kibana: KibanaStandin):
    kibana.script.append(Scripted(200, b"{}", delay=2.0))
    with pytest.raises(ElasticError) as excinfo:
        import_dashboards(kibana.url, timeout=0.3)
    assert "did not answer within 0.3 s" in _one_line_error(excinfo)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"kibana_url": "localhost:5601"}, "must start with http:// or https://"),
        ({"kibana_url": "http://127.0.0.1:9", "api_key": "k", "username": "u", "password": "p"}, "not both"),
        ({"kibana_url": "http://127.0.0.1:9", "username": "u"}, "needs a password"),
        ({"kibana_url": "http://127.0.0.1:9", "space": "Not A Space"}, "not a Kibana space id"),
        ({"kibana_url": "https://127.0.0.1:9", "ca_file": "/nonexistent/ca.pem"}, "cannot use the CA file"),
    ],
)
def test_bad_arguments_fail_before_any_request(kwargs, expected):
    with pytest.raises(ElasticError) as excinfo:
        import_dashboards(**kwargs)
    assert expected in _one_line_error(excinfo)


def test_credentials_in_the_url_stay_out_of_messages():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ElasticError) as excinfo:
        import_dashboards(f"http://elastic:hunter2@127.0.0.1:{port}", timeout=5)
    assert "hunter2" not in str(excinfo.value)


# --- a real Kibana --------------------------------------------------------------------------------------


@pytest.mark.skipif(
    not KIBANA_URL,
    reason="set TRAYLLM_KIBANA_URL (and TRAYLLM_KIBANA_API_KEY or "
    "TRAYLLM_KIBANA_USERNAME/PASSWORD) to import into a real Kibana",
)
def test_import_into_a_real_kibana():
    result = import_dashboards(KIBANA_URL, **KIBANA_AUTH)
    assert result.ok, "; ".join(str(e) for e in result.errors)
    assert result.success_count == len(OBJECTS)
    again = import_dashboards(KIBANA_URL, **KIBANA_AUTH)  # overwrite: a re-import after an upgrade
    assert again.ok and again.success_count == len(OBJECTS)
