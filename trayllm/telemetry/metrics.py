"""Prometheus metrics for ``GET /metrics``, fed from the request records so the two never disagree.

``DaemonMetrics.observe(document)`` takes the very document the writer puts in the record file and
updates the latency histograms and the request/token counters from it; nothing else touches them. So
``trayllm_requests_total`` equals the number of records written, by construction. Gauges (queue depth,
in flight, VRAM, model loaded) are state, set by the daemon with ``set_state``.

Names follow vLLM's (``vllm:e2e_request_latency_seconds`` → ``trayllm_e2e_request_latency_seconds``) so
existing dashboards translate; buckets are vLLM's, with 3 s added to the first-token buckets because that
is the default TTFT objective and a bucket edge there makes "share under 3 s" exact. Each instance owns its
``CollectorRegistry``: nothing lands in prometheus_client's global one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from trayllm.telemetry.schema import ERROR_TYPES, OUTCOMES, flatten

NS = 1e9

# vLLM's buckets (vllm/v1/metrics/loggers.py), 3.0 added for the TTFT objective.
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    3.0,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
TPOT_BUCKETS = (
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
LATENCY_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
QUEUE_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
)

NO_ERROR = "none"  # the error_type label of a request that succeeded
OTHER = "other"  # the label for a value outside the schema's closed set (keeps the label set bounded)


def _label(value: Any, allowed: tuple[str, ...], absent: str) -> str:
    if value is None:
        return absent
    return value if value in allowed else OTHER


def _number(flat: Mapping[str, Any], path: str) -> float | None:
    value = flat.get(path)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class DaemonMetrics:
    """The daemon's Prometheus metrics, in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST  # for the /metrics response

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.e2e_latency = Histogram(
            "trayllm_e2e_request_latency_seconds",
            "End-to-end request latency, arrival to last byte (event.duration).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "trayllm_time_to_first_token_seconds",
            "Time to first token from arrival, queue included (llm.ttft.ns).",
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "trayllm_time_per_output_token_seconds",
            "Mean time per output token after the first: (duration - ttft) / (output_tokens - 1).",
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            "trayllm_request_queue_time_seconds",
            "Time spent waiting in the daemon's queue (llm.queue.ns).",
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "trayllm_requests", "Requests finished, one per record written.", ["outcome", "error_type"], registry=r
        )
        self.prompt_tokens = Counter("trayllm_prompt_tokens", "Prompt tokens of finished requests.", registry=r)
        self.generation_tokens = Counter(
            "trayllm_generation_tokens", "Generated tokens of finished requests.", registry=r
        )
        self.waiting = Gauge("trayllm_num_requests_waiting", "Requests queued, not yet generating.", registry=r)
        self.running = Gauge("trayllm_num_requests_running", "Requests generating now.", registry=r)
        self.gpu_memory_used = Gauge(
            "trayllm_gpu_memory_used_bytes",
            "Device memory in use (NVML, every process). Absent without a GPU.",
            ["gpu"],
            registry=r,
        )
        self.gpu_memory_total = Gauge(
            "trayllm_gpu_memory_total_bytes", "Device memory in all. Absent without a GPU.", ["gpu"], registry=r
        )
        self.model_loaded = Gauge(
            "trayllm_model_loaded", "1 when the model is loaded and warmed up, else 0.", registry=r
        )

    def observe(self, document: Mapping[str, Any]) -> None:
        """Count one finished request from its record document (nested, as written)."""
        flat = flatten(document)
        outcome = _label(flat.get("event.outcome"), OUTCOMES, "unknown")
        error_type = _label(flat.get("error.type"), ERROR_TYPES, NO_ERROR)
        self.requests.labels(outcome=outcome, error_type=error_type).inc()
        duration = _number(flat, "event.duration")
        ttft = _number(flat, "llm.ttft.ns")
        queue = _number(flat, "llm.queue.ns")
        input_tokens = _number(flat, "gen_ai.usage.input_tokens")
        output_tokens = _number(flat, "gen_ai.usage.output_tokens")
        if duration is not None and duration >= 0:
            self.e2e_latency.observe(duration / NS)
        if ttft is not None and ttft >= 0:
            self.ttft.observe(ttft / NS)
        if queue is not None and queue >= 0:
            self.queue_time.observe(queue / NS)
        if input_tokens is not None and input_tokens > 0:
            self.prompt_tokens.inc(input_tokens)
        if output_tokens is not None and output_tokens > 0:
            self.generation_tokens.inc(output_tokens)
        if (
            duration is not None
            and ttft is not None
            and output_tokens is not None
            and output_tokens >= 2
            and duration >= ttft
        ):
            self.tpot.observe((duration - ttft) / NS / (output_tokens - 1))

    def set_state(
        self,
        waiting: int,
        running: int,
        loaded: bool,
        vram_used: int | None = None,
        vram_total: int | None = None,
        *,
        gpu: str = "0",
    ) -> None:
        """Set the gauges. VRAM None (no GPU, or NVML unavailable) removes the GPU series instead of showing 0."""
        self.waiting.set(waiting)
        self.running.set(running)
        self.model_loaded.set(1 if loaded else 0)
        for gauge, value in ((self.gpu_memory_used, vram_used), (self.gpu_memory_total, vram_total)):
            if value is None:
                with contextlib.suppress(KeyError):  # never set
                    gauge.remove(gpu)
            else:
                gauge.labels(gpu=gpu).set(value)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
