"""RequestRecord → nested ECS document, outcome classification, and W3C traceparent parsing."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from trayllm import errors
from trayllm.telemetry.record import classify_outcome, error_type_of, parse_traceparent, to_document
from trayllm.telemetry.schema import ERROR_TYPES, REQUEST_FIELDS, flatten, validate_record


def test_document_is_nested_ecs_with_nanoseconds(make_gpu_record):
    doc = to_document(make_gpu_record())
    assert list(doc)[:3] == ["@timestamp", "log", "message"]
    assert doc["@timestamp"] == "2026-03-01T12:00:00.123456Z"
    assert doc["event"] == {
        "id": "req-1",
        "kind": "event",
        "category": ["web"],
        "outcome": "success",
        "duration": 1_500_000_000,
        "end": "2026-03-01T12:00:01.623456Z",
        "dataset": "trayllm.requests",
    }
    assert doc["llm"]["ttft"] == {"ns": 250_000_000}
    assert doc["llm"]["vram"] == {
        "peak": {"bytes": 2 * 1024**3, "pct": 0.025},
        "total": {"bytes": 80 * 1024**3},
        "nvml": {"used": {"bytes": 3 * 1024**3}, "pct": 0.0375},
    }
    assert doc["gen_ai"]["response"]["finish_reasons"] == ["stop"]
    assert doc["data_stream"] == {"type": "logs", "dataset": "trayllm.requests", "namespace": "default"}
    assert doc["log"] == {"level": "info"}
    assert doc["message"] == "chat completed in 1.500 s, 12 → 51 tokens"
    assert not any("." in key for key in doc)
    assert "error" not in doc


def test_vram_is_never_invented(make_cpu_record, make_gpu_record):
    cpu = flatten(to_document(make_cpu_record()))
    assert cpu["llm.model.device"] == "cpu"
    assert not [path for path in cpu if path.startswith("llm.vram")]
    # readings passed by mistake for a CPU model are still not written
    mistaken = flatten(
        to_document(make_cpu_record(vram_peak_bytes=1, vram_total_bytes=2, nvml_used_bytes=1, nvml_total_bytes=2))
    )
    assert not [path for path in mistaken if path.startswith("llm.vram")]
    # on CUDA with only the allocator peak known: no pct, no NVML fields
    partial = flatten(to_document(make_gpu_record(vram_total_bytes=None, nvml_used_bytes=None)))
    assert [p for p in partial if p.startswith("llm.vram")] == ["llm.vram.peak.bytes"]


def test_absent_measurements_and_content_are_left_out(make_gpu_record):
    rec = make_gpu_record(
        ttft_ns=None,
        seed=None,
        trace_id=None,
        span_id=None,
        tokens_per_second=float("inf"),
        input_messages=[{"role": "user", "content": "secret"}],
        output_text="reply",
    )
    flat = flatten(to_document(rec))
    for path in (
        "llm.ttft.ns",
        "gen_ai.request.seed",
        "trace.id",
        "span.id",
        "llm.tokens_per_second",
        "gen_ai.input.messages",
        "gen_ai.output.text",
    ):
        assert path not in flat
    with_content = flatten(to_document(rec, include_content=True))
    assert with_content["gen_ai.input.messages"] == [{"role": "user", "content": "secret"}]
    assert with_content["gen_ai.output.text"] == "reply"
    assert set(flatten(to_document(rec))) <= REQUEST_FIELDS.keys()


def test_failure_record(make_gpu_record):
    oom = errors.EngineOutOfMemory("the GPU ran out of memory")
    doc = to_document(
        make_gpu_record(outcome=classify_outcome("error", oom), finish_reason="error", http_status=503, output_tokens=0)
    )
    assert doc["event"]["outcome"] == "failure"
    assert doc["error"] == {"type": "oom", "message": "the GPU ran out of memory"}
    assert doc["log"]["level"] == "error"
    assert doc["message"] == "chat failed (oom) after 1.500 s: the GPU ran out of memory"
    assert validate_record(doc) == []
    refused = to_document(
        make_gpu_record(outcome=classify_outcome(None, errors.InvalidRequest("bad")), http_status=400)
    )
    assert refused["log"]["level"] == "warn"


def test_naive_start_time_is_refused(make_gpu_record):
    with pytest.raises(ValueError, match="timezone-aware"):
        to_document(make_gpu_record(started=datetime(2026, 3, 1, 12, 0)))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (errors.EngineOutOfMemory("x"), "oom"),
        (errors.RequestTimeout("x"), "timeout"),
        (errors.InvalidRequest("x"), "invalid_request"),
        (errors.ContextLengthExceeded("x"), "invalid_request"),
        (errors.MethodNotAllowed("x"), "invalid_request"),
        (errors.RateLimited("x", retry_after=1), "rate_limited"),
        (errors.QueueFull("x"), "queue_full"),
        (errors.NotReady("x"), "not_ready"),
        (errors.ServiceUnavailable("x"), "not_ready"),
        (errors.ShuttingDown("x"), "shutting_down"),
        (errors.ModelNotFound("x"), "not_found"),
        (errors.EndpointNotFound("x"), "not_found"),
        (errors.Unauthorized("x"), "unauthorized"),
        (errors.Forbidden("x"), "forbidden"),
        (errors.EngineFailure("x"), "engine_error"),
        (errors.RequestError("x"), "engine_error"),
        (RuntimeError("x"), "engine_error"),
    ],
)
def test_error_types(error, expected):
    assert error_type_of(error) == expected
    assert classify_outcome("error", error) == ("failure", expected, "x")


def test_every_request_error_class_maps_into_the_schema_set():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for cls in subclasses(errors.RequestError):
        assert error_type_of(cls("x")) in ERROR_TYPES, cls
    assert set(REQUEST_FIELDS["error.type"].allowed) == set(ERROR_TYPES)


def test_outcomes_from_finish_reasons():
    assert classify_outcome("stop") == ("success", None, None)
    assert classify_outcome("length") == ("success", None, None)
    assert classify_outcome("cancelled") == ("unknown", "cancelled", "the client cancelled the request")
    assert classify_outcome("error") == ("failure", "engine_error", "generation failed")
    assert classify_outcome(None, asyncio.CancelledError()).outcome == "unknown"
    assert classify_outcome(None, asyncio.CancelledError()).error_type == "cancelled"


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-{SPAN}-01", (TRACE, SPAN)),
        (f"00-{TRACE}-{SPAN}-00", (TRACE, SPAN)),
        (f"  00-{TRACE}-{SPAN}-01\t", (TRACE, SPAN)),  # HTTP optional whitespace
        (f"00-{TRACE.upper()}-{SPAN}-01", None),  # ids must be lowercase
        (f"00-{TRACE}-{SPAN.upper()}-01", None),
        (f"01-{TRACE}-{SPAN}-01", None),  # only version 00
        (f"ff-{TRACE}-{SPAN}-01", None),
        (f"00-{'0' * 32}-{SPAN}-01", None),  # all-zero trace id
        (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero parent id
        (f"00-{TRACE[:-1]}-{SPAN}-01", None),
        (f"00-{TRACE}-{SPAN}0-01", None),
        (f"00-{TRACE}-{SPAN}-1", None),
        (f"00-{TRACE}-{SPAN}-01-extra", None),  # version 00 has exactly four fields
        (f"00-{TRACE[:-1]}g-{SPAN}-01", None),
        (f"00_{TRACE}_{SPAN}_01", None),
        ("", None),
        (None, None),
    ],
)
def test_traceparent(header, expected):
    assert parse_traceparent(header) == expected
