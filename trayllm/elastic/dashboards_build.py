"""Builds ``assets/dashboards.ndjson``, the Kibana saved objects trayllm ships: two data views and one dashboard.

Why a generator and not a file exported from Kibana: an export is thousands of characters of Lens state per
panel, where a typo in a field name or a dangling reference only shows up as a broken panel after import.
Here every field comes from the record schema (``trayllm.telemetry.schema``), every reference line from the
default objectives (``trayllm.slo.objectives``), and every reference is made by the same helper that makes
the layer it points from. The committed ``.ndjson`` is the artifact (``import_dashboards`` sends it as is);
``tests/elastic/test_dashboards.py`` checks it equals this module's output, so rerun
``python -m trayllm.elastic.dashboards_build`` after changing anything here.

Format choices, each for a Kibana 8.19 import (and later: Kibana imports older objects, never newer ones):

- Every object carries ``coreMigrationVersion``/``typeMigrationVersion`` no newer than the last migration its
  shape already has (index-pattern 8.0.0, lens 8.9.0, dashboard 8.9.0): Kibana then runs only the later
  migrations, instead of all of them from 7.x on a state that is already current.
- Lens panels are saved objects of their own (by reference), so each one is migrated as a ``lens`` object;
  by-value panels would instead go through the dashboard's embeddable migrations.
- ``*JSON`` attributes (``panelsJSON``, ``optionsJSON``, ``searchSourceJSON``, the data views' maps) are JSON
  *strings*, as the import API wants them.
- Durations are nanoseconds (``event.duration``, ``llm.ttft.ns``): the data view gives them Kibana's
  ``duration`` format (nanoseconds in, human-precise out), which the Lens percentiles inherit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trayllm.slo.objectives import DEFAULT_OBJECTIVES
from trayllm.telemetry.schema import ALERTS, REQUESTS, RecordSchema

ASSET = Path(__file__).with_name("assets") / "dashboards.ndjson"

CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSIONS = {"index-pattern": "8.0.0", "lens": "8.9.0", "dashboard": "8.9.0"}
PANEL_VERSION = "8.9.0"

REQUESTS_VIEW = "trayllm-requests"
ALERTS_VIEW = "trayllm-alerts"
DASHBOARD_ID = "trayllm"

_OBJECTIVES = {o.name: o for o in DEFAULT_OBJECTIVES}
TTFT_OBJECTIVE = _OBJECTIVES["first_token_latency_p99"]
VRAM_OBJECTIVE = _OBJECTIVES["peak_vram"]
ERROR_OBJECTIVE = _OBJECTIVES["error_rate"]

SERVER_SIDE_KQL = "not error.type : (" + " or ".join(sorted(ERROR_OBJECTIVE.excluded)) + ")"
"""Records the error budget counts: the same "valid events" as the daemon's error-rate objective (a request the
client got wrong, cancelled or the user paused burns nothing and dilutes nothing). A record without
``error.type`` (a success) matches, as KQL's ``not`` keeps documents that lack the field."""

FAILURE_KQL = 'event.outcome : "failure"'

_NS_DURATION = {
    "id": "duration",
    "params": {
        "inputFormat": "nanoseconds",
        "outputFormat": "humanizePrecise",
        "outputPrecision": 2,
        "useShortSuffix": True,
        "includeSpaceWithSuffix": True,
    },
}
_PERCENT = {"id": "percent", "params": {"pattern": "0,0.[0]%"}}
_BYTES = {"id": "bytes"}
_SPEED = {"id": "number", "params": {"pattern": "0,0.0"}}


def _json(value: Any) -> str:
    """The compact JSON string a ``*JSON`` attribute holds."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- data views -----------------------------------------------------------------------------------------


def _data_view(
    view_id: str, schema: RecordSchema, name: str, formats: Mapping[str, Any], labels: Mapping[str, str]
) -> dict[str, Any]:
    """An index-pattern object over every namespace of the schema's data stream (``logs-trayllm.requests-*``)."""
    stream = schema.data_stream
    return {
        "type": "index-pattern",
        "id": view_id,
        "attributes": {
            "title": f"{stream['type']}-{stream['dataset']}-*",
            "name": name,
            "timeFieldName": "@timestamp",
            "fields": "[]",
            "fieldFormatMap": _json(dict(formats)),
            "fieldAttrs": _json({field: {"customLabel": label} for field, label in labels.items()}),
            "runtimeFieldMap": "{}",
            "sourceFilters": "[]",
            "typeMeta": "{}",
            "allowNoIndex": True,  # usable before the first record is shipped
        },
        "references": [],
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "typeMigrationVersion": TYPE_MIGRATION_VERSIONS["index-pattern"],
    }


def data_views() -> list[dict[str, Any]]:
    """The two data views: request records and alert transitions."""
    requests = _data_view(
        REQUESTS_VIEW,
        REQUESTS,
        "trayllm requests",
        {
            "event.duration": _NS_DURATION,
            "llm.ttft.ns": _NS_DURATION,
            "llm.queue.ns": _NS_DURATION,
            "llm.vram.peak.pct": _PERCENT,
            "llm.vram.nvml.pct": _PERCENT,
            "llm.vram.peak.bytes": _BYTES,
            "llm.vram.total.bytes": _BYTES,
            "llm.vram.nvml.used.bytes": _BYTES,
            "llm.tokens_per_second": _SPEED,
        },
        {
            "event.duration": "Latency (end to end)",
            "llm.ttft.ns": "Time to first token",
            "llm.queue.ns": "Queue wait",
            "llm.vram.peak.pct": "Peak VRAM (share of device)",
            "llm.tokens_per_second": "Decode speed (tokens/s)",
        },
    )
    alerts = _data_view(
        ALERTS_VIEW,
        ALERTS,
        "trayllm alerts",
        {"llm.vram.allocated.bytes": _BYTES, "llm.vram.reserved.bytes": _BYTES, "llm.vram.total.bytes": _BYTES},
        {"rule.name": "Alert", "event.action": "Transition", "llm.alert.severity": "Severity"},
    )
    return [requests, alerts]


# --- Lens columns ---------------------------------------------------------------------------------------

Columns = dict[str, dict[str, Any]]


def _date_histogram() -> dict[str, Any]:
    return {
        "label": "@timestamp",
        "dataType": "date",
        "operationType": "date_histogram",
        "sourceField": "@timestamp",
        "isBucketed": True,
        "scale": "interval",
        "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
    }


def _count(label: str) -> dict[str, Any]:
    return {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": "count",
        "sourceField": "___records___",
        "isBucketed": False,
        "scale": "ratio",
        "params": {"emptyAsNull": True},
    }


def _metric(operation: str, field: str, label: str, **params: Any) -> dict[str, Any]:
    """A numeric aggregation of one field: percentile, median, average, max."""
    return {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": operation,
        "sourceField": field,
        "isBucketed": False,
        "scale": "ratio",
        "params": params,
    }


def _terms(field: str, size: int, order_column: str, *, other: bool = True) -> dict[str, Any]:
    return {
        "label": f"Top {size} values of {field}",
        "dataType": "string",
        "operationType": "terms",
        "sourceField": field,
        "isBucketed": True,
        "scale": "ordinal",
        "params": {
            "size": size,
            "orderBy": {"type": "column", "columnId": order_column},
            "orderDirection": "desc",
            "otherBucket": other,
            "missingBucket": False,
            "parentFormat": {"id": "terms"},
            "include": [],
            "exclude": [],
            "includeIsRegex": False,
            "excludeIsRegex": False,
        },
    }


def _number(value: float) -> str:
    """A static value as Lens stores it: a string, without a trailing ``.0`` (``3000000000``, ``0.8``)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _static_value(value: float, label: str) -> dict[str, Any]:
    return {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": "static_value",
        "isStaticValue": True,
        "isBucketed": False,
        "scale": "ratio",
        "params": {"value": _number(value)},
        "references": [],
    }


def _ratio_formula(column_id: str, label: str, numerator_kql: str, fmt: Mapping[str, Any]) -> Columns:
    """``count(kql=numerator) / count()`` as a Lens formula column, with the hidden columns Lens itself derives
    from the formula text (``<id>X0`` … ``<id>X2``): Lens runs those, the formula column only names them."""
    formula = f"count(kql='{numerator_kql}') / count()"
    part = f"Part of {label}"
    x0, x1, x2 = (f"{column_id}X{i}" for i in range(3))
    return {
        column_id: {
            "label": label,
            "customLabel": True,
            "dataType": "number",
            "operationType": "formula",
            "isBucketed": False,
            "scale": "ratio",
            "references": [x2],
            "params": {"formula": formula, "isFormulaBroken": False, "format": dict(fmt)},
        },
        x0: {**_count(part), "params": {"emptyAsNull": False}, "filter": {"language": "kuery", "query": numerator_kql}},
        x1: {**_count(part), "params": {"emptyAsNull": False}},
        x2: {
            "label": part,
            "customLabel": True,
            "dataType": "number",
            "operationType": "math",
            "isBucketed": False,
            "scale": "ratio",
            "references": [x0, x1],
            "params": {
                "tinymathAst": {
                    "type": "function",
                    "name": "divide",
                    "args": [x0, x1],
                    "location": {"min": 0, "max": len(formula)},
                    "text": formula,
                }
            },
        },
    }


def _layer(columns: Columns) -> dict[str, Any]:
    """A form-based layer; Lens wants bucket columns first in ``columnOrder``, then metrics as given."""
    order = [c for c, col in columns.items() if col["isBucketed"]] + [
        c for c, col in columns.items() if not col["isBucketed"]
    ]
    return {"columnOrder": order, "columns": columns, "incompleteColumns": {}}


# --- Lens visualizations --------------------------------------------------------------------------------


def _data_layer(layer_id: str, series: str, x: str, accessors: list[str], split: str | None = None) -> dict[str, Any]:
    layer: dict[str, Any] = {
        "layerId": layer_id,
        "layerType": "data",
        "seriesType": series,
        "xAccessor": x,
        "accessors": accessors,
        "palette": {"type": "palette", "name": "default"},
    }
    if split:
        layer["splitAccessor"] = split
    return layer


def _reference_layer(layer_id: str, accessor: str) -> dict[str, Any]:
    return {
        "layerId": layer_id,
        "layerType": "referenceLine",
        "accessors": [accessor],
        "yConfig": [
            {
                "forAccessor": accessor,
                "axisMode": "left",
                "color": "#E7664C",
                "lineStyle": "dashed",
                "lineWidth": 2,
                "fill": "none",
                "iconPosition": "auto",
                "textVisibility": True,
            }
        ],
    }


def _xy(layers: list[dict[str, Any]], preferred: str, y_title: str | None = None) -> dict[str, Any]:
    vis: dict[str, Any] = {
        "legend": {"isVisible": True, "position": "right"},
        "valueLabels": "hide",
        "fittingFunction": "None",
        "preferredSeriesType": preferred,
        "axisTitlesVisibilitySettings": {"x": False, "yLeft": y_title is not None, "yRight": True},
        "layers": layers,
    }
    if y_title is not None:
        vis["yTitle"] = y_title
    return vis


def _lens(
    lens_id: str,
    title: str,
    description: str,
    vis_type: str,
    view: str,
    layers: Mapping[str, dict[str, Any]],
    visualization: dict[str, Any],
    query: str = "",
) -> dict[str, Any]:
    """A by-reference Lens object; each of its layers reads ``view`` through a reference of Lens's naming."""
    return {
        "type": "lens",
        "id": lens_id,
        "attributes": {
            "title": title,
            "description": description,
            "visualizationType": vis_type,
            "state": {
                "datasourceStates": {"formBased": {"layers": dict(layers)}},
                "visualization": visualization,
                "query": {"query": query, "language": "kuery"},
                "filters": [],
                "adHocDataViews": {},
                "internalReferences": [],
            },
        },
        "references": [
            {"type": "index-pattern", "id": view, "name": f"indexpattern-datasource-layer-{layer_id}"}
            for layer_id in layers
        ],
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "typeMigrationVersion": TYPE_MIGRATION_VERSIONS["lens"],
    }


def _percentile_lens(
    lens_id: str, title: str, description: str, field: str, reference: tuple[float, str] | None = None
) -> dict[str, Any]:
    """P50/P95/P99 of one field over time, optionally against an objective's line."""
    columns: Columns = {"time": _date_histogram()}
    for p in (50, 95, 99):
        columns[f"p{p}"] = _metric("percentile", field, f"P{p}", percentile=p)
    layers = {f"{lens_id}-data": _layer(columns)}
    vis_layers = [_data_layer(f"{lens_id}-data", "line", "time", ["p50", "p95", "p99"])]
    if reference is not None:
        value, label = reference
        layers[f"{lens_id}-slo"] = _layer({"slo": _static_value(value, label)})
        vis_layers.append(_reference_layer(f"{lens_id}-slo", "slo"))
    return _lens(lens_id, title, description, "lnsXY", REQUESTS_VIEW, layers, _xy(vis_layers, "line"))


def visualizations() -> list[dict[str, Any]]:
    """The dashboard's Lens panels, in the order they are laid out (two per row)."""
    ttft_limit_ns = round(TTFT_OBJECTIVE.threshold / TTFT_OBJECTIVE.scale)
    vram_limit = VRAM_OBJECTIVE.threshold
    error_budget = ERROR_OBJECTIVE.threshold
    lenses = [
        _lens(
            "trayllm-requests-by-outcome",
            "Requests by outcome",
            "Requests per interval: success, failure, unknown (the client cancelled).",
            "lnsXY",
            REQUESTS_VIEW,
            {
                "outcome-data": _layer(
                    {
                        "outcome": _terms("event.outcome", 3, "count"),
                        "time": _date_histogram(),
                        "count": _count("Requests"),
                    }
                )
            },
            _xy([_data_layer("outcome-data", "bar_stacked", "time", ["count"], split="outcome")], "bar_stacked"),
        ),
        _lens(
            "trayllm-error-rate",
            "Error rate vs. budget",
            f"Share of failed requests among those the error budget counts (client-side errors, cancels and "
            f"pauses excluded), against the {error_budget:.1%} budget.",
            "lnsXY",
            REQUESTS_VIEW,
            {
                "errors-data": _layer(
                    {
                        "time": _date_histogram(),
                        **_ratio_formula(
                            "rate", "Error rate", FAILURE_KQL, {"id": "percent", "params": {"decimals": 2}}
                        ),
                    }
                ),
                "errors-budget": _layer({"budget": _static_value(error_budget, f"Budget: {error_budget:.1%}")}),
            },
            _xy(
                [_data_layer("errors-data", "line", "time", ["rate"]), _reference_layer("errors-budget", "budget")],
                "line",
            ),
            query=SERVER_SIDE_KQL,
        ),
        _percentile_lens(
            "trayllm-latency",
            "End-to-end latency (P50 / P95 / P99)",
            "event.duration: arrival at the daemon to the last byte, queue wait included.",
            "event.duration",
        ),
        _percentile_lens(
            "trayllm-ttft",
            "First-token latency (P50 / P95 / P99)",
            "llm.ttft.ns: arrival to the first token, against the P99 objective.",
            "llm.ttft.ns",
            (ttft_limit_ns, f"Objective: P99 < {TTFT_OBJECTIVE.threshold:g} s"),
        ),
        _lens(
            "trayllm-tokens-per-second",
            "Decode speed (tokens/s)",
            "llm.tokens_per_second: the median request, and the slowest 5 % (P5).",
            "lnsXY",
            REQUESTS_VIEW,
            {
                "speed-data": _layer(
                    {
                        "time": _date_histogram(),
                        "median": _metric("median", "llm.tokens_per_second", "Median"),
                        "p5": _metric("percentile", "llm.tokens_per_second", "P5", percentile=5),
                    }
                )
            },
            _xy([_data_layer("speed-data", "line", "time", ["median", "p5"])], "line", "tokens/s"),
        ),
        _lens(
            "trayllm-vram",
            "Peak VRAM (share of the device)",
            "The largest llm.vram.peak.pct per interval, against the limit (CUDA only: CPU records have none).",
            "lnsXY",
            REQUESTS_VIEW,
            {
                "vram-data": _layer(
                    {
                        "time": _date_histogram(),
                        "peak": _metric(
                            "max",
                            "llm.vram.peak.pct",
                            "Peak VRAM",
                            emptyAsNull=True,
                            format={"id": "percent", "params": {"decimals": 1}},
                        ),
                    }
                ),
                "vram-limit": _layer({"limit": _static_value(vram_limit, f"Limit: {vram_limit:.0%}")}),
            },
            _xy([_data_layer("vram-data", "line", "time", ["peak"]), _reference_layer("vram-limit", "limit")], "line"),
        ),
        _lens(
            "trayllm-requests-by-user",
            "Requests by user",
            "Who uses the daemon: the ten busiest user.name values.",
            "lnsXY",
            REQUESTS_VIEW,
            {"user-data": _layer({"user": _terms("user.name", 10, "count"), "count": _count("Requests")})},
            _xy([_data_layer("user-data", "bar_horizontal", "user", ["count"])], "bar_horizontal"),
        ),
        _lens(
            "trayllm-requests-by-model-version",
            "Requests by model version",
            "llm.model.version (content hash or revision) over time: shows when a new model took over.",
            "lnsXY",
            REQUESTS_VIEW,
            {
                "model-data": _layer(
                    {
                        "version": _terms("llm.model.version", 5, "count"),
                        "time": _date_histogram(),
                        "count": _count("Requests"),
                    }
                )
            },
            _xy([_data_layer("model-data", "bar_stacked", "time", ["count"], split="version")], "bar_stacked"),
        ),
        _lens(
            "trayllm-alerts-firing",
            "Alerts firing",
            "Alerts that started firing, per interval and rule (oom, slo.*, burn.*).",
            "lnsXY",
            ALERTS_VIEW,
            {
                "firing-data": _layer(
                    {
                        "rule": _terms("rule.name", 10, "count"),
                        "time": _date_histogram(),
                        "count": _count("Alerts fired"),
                    }
                )
            },
            _xy([_data_layer("firing-data", "bar_stacked", "time", ["count"], split="rule")], "bar_stacked"),
            query='event.action : "firing"',
        ),
        _lens(
            "trayllm-alert-transitions",
            "Alert transitions",
            "Every alert transition (firing, resolved) per interval, newest first.",
            "lnsDatatable",
            ALERTS_VIEW,
            {
                "transitions-data": _layer(
                    {
                        "time": _date_histogram(),
                        "rule": _terms("rule.name", 20, "count", other=False),
                        "action": _terms("event.action", 2, "count", other=False),
                        "severity": _terms("llm.alert.severity", 2, "count", other=False),
                        "count": _count("Transitions"),
                    }
                )
            },
            {
                "layerId": "transitions-data",
                "layerType": "data",
                "columns": [{"columnId": c} for c in ("time", "rule", "action", "severity", "count")],
                "sorting": {"columnId": "time", "direction": "desc"},
                "rowHeight": "single",
                "rowHeightLines": 1,
            },
        ),
    ]
    return lenses


# --- the dashboard --------------------------------------------------------------------------------------


def dashboard(lenses: list[dict[str, Any]]) -> dict[str, Any]:
    """The "trayllm" dashboard: the Lens objects by reference, two per row, last 24 hours, refreshed each minute."""
    panels = []
    references = []
    width, height = 24, 12
    for i, lens in enumerate(lenses):
        index = f"panel-{i + 1}"
        panels.append(
            {
                "version": PANEL_VERSION,
                "type": "lens",
                "gridData": {"x": (i % 2) * width, "y": (i // 2) * height, "w": width, "h": height, "i": index},
                "panelIndex": index,
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{index}",
            }
        )
        references.append({"type": "lens", "id": lens["id"], "name": f"{index}:panel_{index}"})
    return {
        "type": "dashboard",
        "id": DASHBOARD_ID,
        "attributes": {
            "title": "trayllm",
            "description": "Requests and alerts of the trayllm daemon: traffic, latency, speed, VRAM and the error "
            "budget, against the default objectives.",
            "panelsJSON": _json(panels),
            "optionsJSON": _json(
                {
                    "useMargins": True,
                    "syncColors": False,
                    "syncCursor": True,
                    "syncTooltips": False,
                    "hidePanelTitles": False,
                }
            ),
            "timeRestore": True,
            "timeFrom": "now-24h",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 60000},
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": _json({"query": {"query": "", "language": "kuery"}, "filter": []})
            },
        },
        "references": references,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "typeMigrationVersion": TYPE_MIGRATION_VERSIONS["dashboard"],
    }


def saved_objects() -> list[dict[str, Any]]:
    """Every object of the file, dependencies first (data views, then Lens, then the dashboard)."""
    lenses = visualizations()
    return [*data_views(), *lenses, dashboard(lenses)]


def render() -> str:
    """The NDJSON text: one compact object per line, a newline after each."""
    return "".join(_json(obj) + "\n" for obj in saved_objects())


def main() -> None:
    """Rewrite the committed asset from this module."""
    ASSET.parent.mkdir(parents=True, exist_ok=True)
    ASSET.write_text(render(), encoding="utf-8")
    print(f"wrote {ASSET} ({len(saved_objects())} saved objects)")


if __name__ == "__main__":
    main()
