"""Record factories shared by the telemetry tests: a full GPU record and a CPU one, any field overridable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

from trayllm.telemetry.record import RequestRecord, classify_outcome

STARTED = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def gpu_record(**overrides: Any) -> RequestRecord:
    """A successful streamed chat on CUDA with every measurement present."""
    fields: dict[str, Any] = dict(
        request_id="req-1",
        started=STARTED,
        duration_ns=1_500_000_000,
        outcome=classify_outcome("stop"),
        service_version="0.1.0",
        host_name="desk",
        user="alice",
        requested_model="smollm2-135m",
        response_model="smollm2-135m",
        model_version="sha256:abc123",
        model_dtype="bfloat16",
        model_quantization="none",
        model_device="cuda:0",
        max_tokens=256,
        max_tokens_capped=False,
        temperature=0.7,
        top_p=0.95,
        seed=42,
        stream=True,
        finish_reason="stop",
        http_status=200,
        input_tokens=12,
        output_tokens=51,
        ttft_ns=250_000_000,
        queue_ns=10_000_000,
        tokens_per_second=40.0,
        vram_peak_bytes=2 * 1024**3,
        vram_total_bytes=80 * 1024**3,
        nvml_used_bytes=3 * 1024**3,
        nvml_total_bytes=80 * 1024**3,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="00f067aa0ba902b7",
    )
    fields.update(overrides)
    return RequestRecord(**fields)


def cpu_record(**overrides: Any) -> RequestRecord:
    """The same request on the CPU: no VRAM measured."""
    fields: dict[str, Any] = dict(
        model_device="cpu",
        model_dtype="float32",
        vram_peak_bytes=None,
        vram_total_bytes=None,
        nvml_used_bytes=None,
        nvml_total_bytes=None,
    )
    fields.update(overrides)
    return gpu_record(**fields)


@pytest.fixture
def make_gpu_record() -> Callable[..., RequestRecord]:
    return gpu_record


@pytest.fixture
def make_cpu_record() -> Callable[..., RequestRecord]:
    return cpu_record
