"""Lens building blocks: the columns, layers and by-reference Lens objects the trayllm dashboard is made of.

Each helper writes one piece of Lens's saved state in the shape Kibana 8.9 stores it, so a panel in
``dashboards_build`` says what it shows (a percentile over time, a ratio against a budget) and not how Lens spells it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# the migration versions every saved object trayllm ships declares (dashboards_build's docstring says why)
CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSIONS = {"index-pattern": "8.0.0", "lens": "8.9.0", "dashboard": "8.9.0"}

# --- Lens columns ---------------------------------------------------------------------------------------

Columns = dict[str, dict[str, Any]]


def date_histogram() -> dict[str, Any]:
    return {
        "label": "@timestamp",
        "dataType": "date",
        "operationType": "date_histogram",
        "sourceField": "@timestamp",
        "isBucketed": True,
        "scale": "interval",
        "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
    }


def count(label: str) -> dict[str, Any]:
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


def metric(operation: str, field: str, label: str, **params: Any) -> dict[str, Any]:
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


def terms(field: str, size: int, order_column: str, *, other: bool = True) -> dict[str, Any]:
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


def static_value(value: float, label: str) -> dict[str, Any]:
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


def ratio_formula(column_id: str, label: str, numerator_kql: str, fmt: Mapping[str, Any]) -> Columns:
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
        x0: {**count(part), "params": {"emptyAsNull": False}, "filter": {"language": "kuery", "query": numerator_kql}},
        x1: {**count(part), "params": {"emptyAsNull": False}},
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


def layer(columns: Columns) -> dict[str, Any]:
    """A form-based layer; Lens wants bucket columns first in ``columnOrder``, then metrics as given."""
    order = [c for c, col in columns.items() if col["isBucketed"]] + [
        c for c, col in columns.items() if not col["isBucketed"]
    ]
    return {"columnOrder": order, "columns": columns, "incompleteColumns": {}}


# --- Lens layers and objects ----------------------------------------------------------------------------


def data_layer(layer_id: str, series: str, x: str, accessors: list[str], split: str | None = None) -> dict[str, Any]:
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


def reference_layer(layer_id: str, accessor: str) -> dict[str, Any]:
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


def xy(layers: list[dict[str, Any]], preferred: str, y_title: str | None = None) -> dict[str, Any]:
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


def lens_object(
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
