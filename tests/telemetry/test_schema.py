"""The field table, the index-template properties derived from it, and record validation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from trayllm.telemetry.record import to_document
from trayllm.telemetry.schema import (
    CONTENT_FIELDS,
    REQUEST_FIELDS,
    REQUIRED,
    FieldType,
    es_properties,
    flatten,
    nest,
    validate_record,
)


def _leaves(properties: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, node in properties.items():
        path = f"{prefix}.{name}" if prefix else name
        if "properties" in node:
            assert set(node) == {"properties"}, f"{path} is both an object and a leaf"
            out.update(_leaves(node["properties"], path))
        else:
            out[path] = node
    return out


def test_es_properties_has_exactly_the_table_with_its_types():
    leaves = _leaves(es_properties())
    assert leaves.keys() == REQUEST_FIELDS.keys()
    for path, field in REQUEST_FIELDS.items():
        assert leaves[path]["type"] == field.es_type, path
        if field.es_type == "scaled_float":
            assert leaves[path]["scaling_factor"] == field.scaling_factor
    assert leaves["event.duration"] == {"type": "long"}
    assert leaves["llm.vram.peak.pct"] == {"type": "scaled_float", "scaling_factor": 1000}
    assert es_properties()["data_stream"]["properties"]["dataset"] == {"type": "constant_keyword"}


def test_table_names_are_ecs_style_and_sets_are_subsets():
    for path in REQUEST_FIELDS:
        assert path == path.lower() and " " not in path and "-" not in path
        assert REQUEST_FIELDS[path].description
    assert REQUEST_FIELDS.keys() >= REQUIRED
    assert REQUEST_FIELDS.keys() >= CONTENT_FIELDS
    with pytest.raises(ValueError, match="unknown Elasticsearch type"):
        FieldType("integer_range", "no")


def test_flatten_and_nest_are_inverses(make_gpu_record):
    doc = to_document(
        make_gpu_record(input_messages=[{"role": "user", "content": "hi"}], output_text="hello"), include_content=True
    )
    flat = flatten(doc)
    assert flat["llm.vram.peak.bytes"] == 2 * 1024**3
    assert flat["gen_ai.input.messages"] == [{"role": "user", "content": "hi"}]
    assert nest(flat) == doc
    # a flattened-type field holding an object stays one leaf
    assert flatten({"gen_ai": {"input": {"messages": {"a": {"b": 1}}}}}) == {"gen_ai.input.messages": {"a": {"b": 1}}}
    with pytest.raises(ValueError):
        nest({"llm.ttft": 1, "llm.ttft.ns": 2})


def test_a_built_record_validates(make_gpu_record, make_cpu_record):
    assert validate_record(to_document(make_gpu_record())) == []
    assert validate_record(to_document(make_cpu_record())) == []
    content = to_document(
        make_gpu_record(input_messages=[{"role": "user", "content": "hi"}], output_text="yo"), include_content=True
    )
    assert validate_record(content) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("event.duration", 1.5, "event.duration: long wants an integer, got float"),
        ("event.duration", "1500", "event.duration: long wants an integer"),
        ("gen_ai.usage.output_tokens", True, "long wants an integer, got bool"),
        ("gen_ai.request.stream", "yes", "boolean wants true or false"),
        ("llm.vram.peak.pct", float("nan"), "scaled_float wants a finite number"),
        ("@timestamp", "yesterday", "date wants an ISO 8601 time"),
        ("@timestamp", "2026-03-01T12:00:00", "date wants an ISO 8601 time with a zone"),
        ("event.outcome", "ok", "'ok' is not one of success, failure, unknown"),
        ("host.name", ["a", "b"], "host.name: keyword wants one value, got an array"),
        ("gen_ai.response.finish_reasons", ["stop", 3], "gen_ai.response.finish_reasons[1]: keyword wants a string"),
        ("user.name", None, "user.name: null"),
        ("data_stream.dataset", "other", "is not this stream's 'trayllm.requests'"),
    ],
)
def test_wrong_types_and_values_fail(make_gpu_record, path, value, expected):
    doc = flatten(to_document(make_gpu_record()))
    doc[path] = value
    problems = validate_record(nest(doc))
    assert len(problems) == 1 and expected in problems[0], problems


def test_unknown_missing_and_dotted_fields_fail(make_gpu_record):
    doc = to_document(make_gpu_record())
    unknown = copy.deepcopy(doc)
    unknown["llm"]["ttft"]["ms"] = 250
    assert validate_record(unknown) == ["llm.ttft.ms: not a request-record field"]

    missing = copy.deepcopy(doc)
    del missing["event"]["id"], missing["@timestamp"]
    assert validate_record(missing) == ["@timestamp: required field missing", "event.id: required field missing"]

    dotted = copy.deepcopy(doc)
    dotted["event.duration"] = dotted["event"].pop("duration")
    assert validate_record(dotted) == ["event.duration: dotted key in a nested document (write nested objects)"]


def test_a_failure_must_say_why(make_gpu_record):
    doc = to_document(make_gpu_record())
    doc["event"]["outcome"] = "failure"
    assert validate_record(doc) == ["error.type: required when event.outcome is failure"]
