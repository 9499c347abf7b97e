"""Build one request's record: what the daemon measured in, one nested ECS document out.

The daemon fills a ``RequestRecord`` from what it knows when the request ends (the engine's ``Finished``
event, the HTTP status, the caller) and ``to_document`` turns it into the JSON object the writer puts on
one line. Absent measurements stay absent: no VRAM fields on CPU, no ``llm.ttft.ns`` for a request that
never produced a token. ``classify_outcome`` is the one place an error becomes ``event.outcome`` and
``error.type`` (the error class's ``record_type``), and ``parse_traceparent`` reads the W3C header that
ties a record to the caller's trace.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from trayllm import errors
from trayllm.telemetry.schema import DATA_STREAM, nest

SERVICE_NAME = "trayllm"


class Outcome(NamedTuple):
    """How a request ended, in record terms."""

    outcome: str  # event.outcome: success | failure | unknown
    error_type: str | None  # error.type, None on success
    error_message: str | None  # error.message, None on success


def error_type_of(error: BaseException) -> str:
    """The ``error.type`` for an exception a request ended with: the error class's own ``record_type``."""
    if isinstance(error, asyncio.CancelledError):
        return errors.CANCELLED
    if isinstance(error, errors.RequestError):
        return error.record_type
    return errors.EngineFailure.record_type  # anything unplanned is our fault, never the client's


def classify_outcome(finish_reason: str | None, error: BaseException | None = None) -> Outcome:
    """Map the engine's finish reason and/or the error a request ended with to outcome and error type.

    - an error wins over the finish reason: failure, with its ``error_type_of`` (cancellation → unknown);
    - ``cancelled`` (the client went away): unknown / cancelled;
    - ``error`` without an exception: failure / engine_error;
    - anything else (stop, length, ...): success.
    """
    if error is not None:
        kind = error_type_of(error)
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        if kind == errors.CANCELLED:
            return Outcome("unknown", kind, message)
        return Outcome("failure", kind, message)
    if finish_reason == "cancelled":
        return Outcome("unknown", errors.CANCELLED, "the client cancelled the request")
    if finish_reason == "error":
        return Outcome("failure", errors.EngineFailure.record_type, "generation failed")
    return Outcome("success", None, None)


_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def parse_traceparent(header: str | None) -> tuple[str, str] | None:
    """``(trace_id, parent_span_id)`` from a W3C ``traceparent`` header, or None if it is not a valid one.

    Only version 00 is accepted, in its exact form ``00-<32 hex>-<16 hex>-<2 hex>``, lowercase, with
    neither id all zeros (W3C Trace Context §3.2). Surrounding spaces/tabs (HTTP optional whitespace) are
    ignored; anything else — uppercase, other versions, extra fields — gives None.
    """
    if header is None:
        return None
    match = _TRACEPARENT.fullmatch(header.strip(" \t"))
    if match is None:
        return None
    trace_id, span_id = match.groups()
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id


@dataclass
class RequestRecord:
    """What the daemon knows about one finished request. None means "not measured": the field is left out."""

    request_id: str
    started: datetime  # wall-clock arrival, timezone-aware
    duration_ns: int  # arrival to the end of the response
    outcome: Outcome
    service_version: str
    host_name: str
    user: str | None = None
    operation: str = "chat"  # OpenTelemetry's gen_ai.operation.name: "chat" or "text_completion"
    api: str = "openai"  # the API the request came in on: "openai" or "ollama"
    # the model
    requested_model: str | None = None
    response_model: str | None = None
    model_version: str | None = None
    model_dtype: str | None = None
    model_quantization: str | None = None
    model_device: str | None = None
    engine_name: str | None = None
    engine_url: str | None = None
    # the parameters in effect
    max_tokens: int | None = None
    max_tokens_capped: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stream: bool | None = None
    ignored_fields: list[str] | None = None  # request fields that changed nothing (Ollama's ignored options)
    finish_reason: str | None = None
    # what came back
    http_status: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    ttft_ns: int | None = None
    queue_ns: int | None = None
    tokens_per_second: float | None = None
    # memory: CUDA only (torch allocator peak, device total, and NVML's device-wide reading)
    vram_peak_bytes: int | None = None
    vram_total_bytes: int | None = None
    vram_peak_fraction: float | None = None  # a remote engine's KV-cache usage, where no bytes are known
    nvml_used_bytes: int | None = None
    nvml_total_bytes: int | None = None
    # tracing
    trace_id: str | None = None
    span_id: str | None = None
    # content: written only when to_document(..., include_content=True) (the log_content setting)
    input_messages: list[dict[str, Any]] | None = None
    output_text: str | None = None


def _fraction(part: int | None, whole: int | None) -> float | None:
    if part is None or not whole or whole <= 0:
        return None
    return round(part / whole, 6)


def _peak_share(rec: RequestRecord, peak: int | None, total: int | None) -> float | None:
    """Peak over total bytes; where no bytes are known, a remote engine's KV-cache usage."""
    return _finite(rec.vram_peak_fraction) if peak is None else _fraction(peak, total)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _level(rec: RequestRecord) -> str:
    if rec.outcome.outcome != "failure":
        return "info"
    status = rec.http_status
    return "warn" if status is not None and 400 <= status < 500 else "error"


def _message(rec: RequestRecord) -> str:
    seconds = rec.duration_ns / 1e9
    if rec.outcome.outcome == "success":
        tokens = "" if rec.output_tokens is None else f", {rec.input_tokens or 0} → {rec.output_tokens} tokens"
        return f"{rec.operation} completed in {seconds:.3f} s{tokens}"
    if rec.outcome.error_type == errors.CANCELLED:
        return f"{rec.operation} cancelled after {seconds:.3f} s"
    return f"{rec.operation} failed ({rec.outcome.error_type}) after {seconds:.3f} s: {rec.outcome.error_message}"


def iso_timestamp(started: datetime) -> str:
    """A timezone-aware time in the records' form: ISO 8601, UTC, microseconds, ``Z``."""
    if started.tzinfo is None:
        raise ValueError("RequestRecord.started must be timezone-aware (a naive time has no place in a record)")
    return started.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def to_document(rec: RequestRecord, *, include_content: bool = False) -> dict[str, Any]:
    """The record as a nested ECS document (objects, not dotted keys), absent values left out.

    VRAM fields appear only when they were measured and the model is not on the CPU; percentages are
    derived here (peak / total, NVML used / NVML total). Prompt and reply text appear only with
    ``include_content`` (the user's ``log_content`` setting). Non-finite floats are left out.
    """
    on_cpu = (rec.model_device or "").split(":")[0] == "cpu"
    vram_total = None if on_cpu else rec.vram_total_bytes
    vram_peak = None if on_cpu else rec.vram_peak_bytes
    nvml_used = None if on_cpu else rec.nvml_used_bytes
    pairs: list[tuple[str, Any]] = [
        ("@timestamp", iso_timestamp(rec.started)),
        ("log.level", _level(rec)),
        ("message", _message(rec)),
        ("event.id", rec.request_id),
        ("event.kind", "event"),
        ("event.category", ["web"]),
        ("event.outcome", rec.outcome.outcome),
        ("event.duration", int(rec.duration_ns)),
        ("event.end", iso_timestamp(rec.started + timedelta(microseconds=rec.duration_ns // 1000))),
        ("event.dataset", DATA_STREAM["dataset"]),
        ("user.name", rec.user),
        ("service.name", SERVICE_NAME),
        ("service.version", rec.service_version),
        ("host.name", rec.host_name),
        ("gen_ai.operation.name", rec.operation),
        ("llm.api", rec.api),
        ("gen_ai.request.model", rec.requested_model),
        ("gen_ai.request.max_tokens", rec.max_tokens),
        ("gen_ai.request.temperature", _finite(rec.temperature)),
        ("gen_ai.request.top_p", _finite(rec.top_p)),
        ("gen_ai.request.seed", rec.seed),
        ("gen_ai.request.stream", rec.stream),
        ("llm.request.ignored", rec.ignored_fields),
        ("gen_ai.response.model", rec.response_model),
        ("gen_ai.response.finish_reasons", None if rec.finish_reason is None else [rec.finish_reason]),
        ("gen_ai.usage.input_tokens", rec.input_tokens),
        ("gen_ai.usage.output_tokens", rec.output_tokens),
        ("llm.model.version", rec.model_version),
        ("llm.model.dtype", rec.model_dtype),
        ("llm.model.quantization", rec.model_quantization),
        ("llm.model.device", rec.model_device),
        ("llm.engine.name", rec.engine_name),
        ("llm.engine.url", rec.engine_url),
        ("llm.ttft.ns", rec.ttft_ns),
        ("llm.queue.ns", rec.queue_ns),
        ("llm.tokens_per_second", _finite(rec.tokens_per_second)),
        ("llm.max_tokens_capped", rec.max_tokens_capped),
        ("llm.vram.peak.bytes", vram_peak),
        ("llm.vram.peak.pct", _peak_share(rec, vram_peak, vram_total)),
        ("llm.vram.total.bytes", vram_total),
        ("llm.vram.nvml.used.bytes", nvml_used),
        ("llm.vram.nvml.pct", _fraction(nvml_used, rec.nvml_total_bytes)),
        ("http.response.status_code", rec.http_status),
        ("error.type", rec.outcome.error_type),
        ("error.message", rec.outcome.error_message),
        ("trace.id", rec.trace_id),
        ("span.id", rec.span_id),
        ("data_stream.type", DATA_STREAM["type"]),
        ("data_stream.dataset", DATA_STREAM["dataset"]),
        ("data_stream.namespace", DATA_STREAM["namespace"]),
    ]
    if include_content:
        pairs += [("gen_ai.input.messages", rec.input_messages), ("gen_ai.output.text", rec.output_text)]
    return nest((path, value) for path, value in pairs if value is not None)
