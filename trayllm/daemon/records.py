"""Exactly one record per chat request, whatever its fate, written without slowing serving.

A request refused before the engine saw it (bad input, rate limit, full queue, not ready) is
recorded by the HTTP handler; every request the engine accepted is recorded by the per-request
finish callback the handler gave the engine, which fires exactly once (success, failure, cancel, timeout).
The writer hands lines to a background thread, so neither path waits on the disk.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from trayllm import __version__
from trayllm.config import Settings
from trayllm.engine.handle import RequestHandle
from trayllm.engine.types import Finished, ModelInfo, SamplingParams
from trayllm.errors import RequestError
from trayllm.telemetry.metrics import DaemonMetrics
from trayllm.telemetry.record import RequestRecord, classify_outcome, parse_traceparent, to_document
from trayllm.telemetry.vram import NvmlProbe
from trayllm.telemetry.writer import RecordWriter

CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away first"; no response was sent


@dataclass
class RequestContext:
    """What the HTTP edge learned about a request, held by its finish callback until it ends."""

    request_id: str
    user: str
    received_wall: datetime
    received: float  # time.monotonic() at arrival, the zero of every duration in the record
    traceparent: str | None
    api: str = "openai"  # the API it came in on ("openai", "ollama") and the kind of call ("chat",
    operation: str = "chat"  # "text_completion"): the route's, set when the request arrives
    requested_model: str | None = None
    stream: bool | None = None
    params: SamplingParams | None = None
    messages: list[dict[str, str]] | None = None  # kept only when log_content is on
    ignored: tuple[str, ...] = ()  # fields the body sent that changed nothing (Ollama's ignored options)
    model: ModelInfo | None = None  # what the engine that took it serves; None: the recorder's model_info()

    @classmethod
    def arriving(
        cls, request_id: str, user: str, traceparent: str | None, api: str = "openai", operation: str = "chat"
    ) -> RequestContext:
        return cls(request_id, user, datetime.now(timezone.utc), time.monotonic(), traceparent, api, operation)


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else max(0, int(seconds * 1e9))


class RequestRecorder:
    def __init__(
        self, settings: Settings, metrics: DaemonMetrics, nvml: NvmlProbe, model_info: Callable[[], ModelInfo | None]
    ) -> None:
        self.enabled = settings.telemetry
        self.settings = settings
        self.model_info = model_info
        self.metrics = metrics
        self.nvml = nvml
        self.writer = RecordWriter(settings.records_path, settings.records_max_bytes, settings.records_backups)
        self.host = socket.gethostname()
        self.observers: list[Callable[[dict[str, Any]], None]] = []  # each record, once written (the SLO monitor)

    def close(self) -> None:
        self.writer.close()

    def rejected(self, context: RequestContext, error: RequestError) -> None:
        """A request that ended at the edge, before the engine took it."""
        if not self.enabled:
            return
        record = self._base(context, classify_outcome(None, error), time.monotonic() - context.received)
        record.http_status = error.status_code
        self._write(record)

    def finished(self, context: RequestContext, handle: RequestHandle, finished: Finished) -> None:
        """A request the engine took, at its end (called on an engine thread): bound to ``context`` with
        ``functools.partial``, this is the ``on_finished`` callback the handler submits with."""
        if not self.enabled:
            return
        t = finished.timings
        end = t.finished if t.finished is not None else time.monotonic()
        record = self._base(context, classify_outcome(finished.reason, finished.error), end - context.received)
        if finished.error is not None:
            record.http_status = finished.error.status_code
        else:
            record.http_status = CLIENT_CLOSED_REQUEST if finished.reason == "cancelled" else 200
        record.finish_reason = None if finished.reason in ("cancelled", "error") else finished.reason
        record.input_tokens = finished.prompt_tokens
        record.output_tokens = finished.completion_tokens
        record.ttft_ns = _ns(None if t.first_token is None else t.first_token - context.received)
        record.queue_ns = _ns(None if t.started is None else t.started - t.arrived)
        record.tokens_per_second = finished.decode_tokens_per_second
        record.max_tokens_capped = handle.max_tokens_capped
        record.vram_peak_fraction = finished.vram_peak_fraction
        model = context.model or self.model_info()
        if finished.vram_peak_bytes is not None and model is not None:
            record.vram_peak_bytes = finished.vram_peak_bytes
            record.vram_total_bytes = finished.vram_total_bytes  # the GPU the peak was on (several: the fullest)
            reading = None if model.device_uuid is None else self.nvml.device_memory(model.device_uuid)
            if reading is not None:  # by UUID: the model's CUDA ordinal is no NVML index
                record.nvml_used_bytes, record.nvml_total_bytes = reading
        if self.settings.log_content:
            record.input_messages = context.messages
            record.output_text = "".join(handle.text)
        self._write(record)

    def _base(self, context: RequestContext, outcome: Any, seconds: float) -> RequestRecord:
        model = context.model or self.model_info()
        params = context.params
        record = RequestRecord(
            request_id=context.request_id,
            started=context.received_wall,
            duration_ns=_ns(seconds) or 0,
            outcome=outcome,
            service_version=__version__,
            host_name=self.host,
            user=context.user,
            operation=context.operation,
            api=context.api,
            requested_model=context.requested_model,
            stream=context.stream,
            ignored_fields=list(context.ignored) or None,
        )
        trace = parse_traceparent(context.traceparent)
        if trace is not None:
            record.trace_id, record.span_id = trace
        if model is not None:
            record.response_model, record.model_version = model.name, model.version
            record.model_dtype, record.model_quantization, record.model_device = (
                model.dtype,
                model.quantization,
                model.device,
            )
            record.engine_name, record.engine_url = model.engine, model.engine_url
        if params is not None:
            record.max_tokens, record.temperature, record.top_p, record.seed = (
                params.max_tokens,
                params.temperature,
                params.top_p,
                params.seed,
            )
        return record

    def _write(self, record: RequestRecord) -> None:
        document = to_document(record, include_content=self.settings.log_content)
        self.writer.write(document)
        self.metrics.observe(document)
        for observer in self.observers:
            observer(document)
