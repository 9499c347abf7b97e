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

from trayllm.elastic.lens import (
    CORE_MIGRATION_VERSION,
    TYPE_MIGRATION_VERSIONS,
    Columns,
    count,
    data_layer,
    date_histogram,
    layer,
    lens_object,
    metric,
    ratio_formula,
    reference_layer,
    static_value,
    terms,
    xy,
)
from trayllm.slo.objectives import DEFAULT_OBJECTIVES
from trayllm.telemetry.schema import ALERTS, REQUESTS, RecordSchema

ASSET = Path(__file__).with_name("assets") / "dashboards.ndjson"

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


# --- Lens panels ----------------------------------------------------------------------------------------


def _percentile_lens(
    lens_id: str, title: str, description: str, field: str, reference: tuple[float, str] | None = None
) -> dict[str, Any]:
    """P50/P95/P99 of one field over time, optionally against an objective's line."""
    columns: Columns = {"time": date_histogram()}
    for p in (50, 95, 99):
        columns[f"p{p}"] = metric("percentile", field, f"P{p}", percentile=p)
    layers = {f"{lens_id}-data": layer(columns)}
    vis_layers = [data_layer(f"{lens_id}-data", "line", "time", ["p50", "p95", "p99"])]
    if reference is not None:
        value, label = reference
        layers[f"{lens_id}-slo"] = layer({"slo": static_value(value, label)})
        vis_layers.append(reference_layer(f"{lens_id}-slo", "slo"))
    return lens_object(lens_id, title, description, "lnsXY", REQUESTS_VIEW, layers, xy(vis_layers, "line"))


def visualizations() -> list[dict[str, Any]]:
    """The dashboard's Lens panels, in the order they are laid out (two per row)."""
    ttft_limit_ns = round(TTFT_OBJECTIVE.threshold / TTFT_OBJECTIVE.scale)
    vram_limit = VRAM_OBJECTIVE.threshold
    error_budget = ERROR_OBJECTIVE.threshold
    lenses = [
        lens_object(
            "trayllm-requests-by-outcome",
            "Requests by outcome",
            "Requests per interval: success, failure, unknown (the client cancelled).",
            "lnsXY",
            REQUESTS_VIEW,
            {
                "outcome-data": layer(
                    {
                        "outcome": terms("event.outcome", 3, "count"),
                        "time": date_histogram(),
                        "count": count("Requests"),
                    }
                )
            },
            xy([data_layer("outcome-data", "bar_stacked", "time", ["count"], split="outcome")], "bar_stacked"),
        ),
        lens_object(
            "trayllm-error-rate",
            "Error rate vs. budget",
            f"Share of failed requests among those the error budget counts (client-side errors, cancels and "
            f"pauses excluded), against the {error_budget:.1%} budget.",
            "lnsXY",
            REQUESTS_VIEW,
            {
                "errors-data": layer(
                    {
                        "time": date_histogram(),
                        **ratio_formula(
                            "rate", "Error rate", FAILURE_KQL, {"id": "percent", "params": {"decimals": 2}}
                        ),
                    }
                ),
                "errors-budget": layer({"budget": static_value(error_budget, f"Budget: {error_budget:.1%}")}),
            },
            xy(
                [data_layer("errors-data", "line", "time", ["rate"]), reference_layer("errors-budget", "budget")],
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
        lens_object(
            "trayllm-tokens-per-second",
            "Decode speed (tokens/s)",
            "llm.tokens_per_second: the median request, and the slowest 5 % (P5).",
            "lnsXY",
            REQUESTS_VIEW,
            {
                "speed-data": layer(
                    {
                        "time": date_histogram(),
                        "median": metric("median", "llm.tokens_per_second", "Median"),
                        "p5": metric("percentile", "llm.tokens_per_second", "P5", percentile=5),
                    }
                )
            },
            xy([data_layer("speed-data", "line", "time", ["median", "p5"])], "line", "tokens/s"),
        ),
        lens_object(
            "trayllm-vram",
            "Peak VRAM (share of the device)",
            "The largest llm.vram.peak.pct per interval, against the limit (CUDA only: CPU records have none).",
            "lnsXY",
            REQUESTS_VIEW,
            {
                "vram-data": layer(
                    {
                        "time": date_histogram(),
                        "peak": metric(
                            "max",
                            "llm.vram.peak.pct",
                            "Peak VRAM",
                            emptyAsNull=True,
                            format={"id": "percent", "params": {"decimals": 1}},
                        ),
                    }
                ),
                "vram-limit": layer({"limit": static_value(vram_limit, f"Limit: {vram_limit:.0%}")}),
            },
            xy([data_layer("vram-data", "line", "time", ["peak"]), reference_layer("vram-limit", "limit")], "line"),
        ),
        lens_object(
            "trayllm-requests-by-user",
            "Requests by user",
            "Who uses the daemon: the ten busiest user.name values.",
            "lnsXY",
            REQUESTS_VIEW,
            {"user-data": layer({"user": terms("user.name", 10, "count"), "count": count("Requests")})},
            xy([data_layer("user-data", "bar_horizontal", "user", ["count"])], "bar_horizontal"),
        ),
        lens_object(
            "trayllm-requests-by-model-version",
            "Requests by model version",
            "llm.model.version (content hash or revision) over time: shows when a new model took over.",
            "lnsXY",
            REQUESTS_VIEW,
            {
                "model-data": layer(
                    {
                        "version": terms("llm.model.version", 5, "count"),
                        "time": date_histogram(),
                        "count": count("Requests"),
                    }
                )
            },
            xy([data_layer("model-data", "bar_stacked", "time", ["count"], split="version")], "bar_stacked"),
        ),
        lens_object(
            "trayllm-alerts-firing",
            "Alerts firing",
            "Alerts that started firing, per interval and rule (oom, slo.*, burn.*).",
            "lnsXY",
            ALERTS_VIEW,
            {
                "firing-data": layer(
                    {
                        "rule": terms("rule.name", 10, "count"),
                        "time": date_histogram(),
                        "count": count("Alerts fired"),
                    }
                )
            },
            xy([data_layer("firing-data", "bar_stacked", "time", ["count"], split="rule")], "bar_stacked"),
            query='event.action : "firing"',
        ),
        lens_object(
            "trayllm-alert-transitions",
            "Alert transitions",
            "Every alert transition (firing, resolved) per interval, newest first.",
            "lnsDatatable",
            ALERTS_VIEW,
            {
                "transitions-data": layer(
                    {
                        "time": date_histogram(),
                        "rule": terms("rule.name", 20, "count", other=False),
                        "action": terms("event.action", 2, "count", other=False),
                        "severity": terms("llm.alert.severity", 2, "count", other=False),
                        "count": count("Transitions"),
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
