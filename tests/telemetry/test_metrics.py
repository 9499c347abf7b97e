"""DaemonMetrics: counters and histograms that agree with the records they were fed, in valid exposition text."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from trayllm import errors
from trayllm.telemetry.metrics import DaemonMetrics
from trayllm.telemetry.record import classify_outcome, to_document

EXPECTED_FAMILIES = {
    "trayllm_e2e_request_latency_seconds": "histogram",
    "trayllm_time_to_first_token_seconds": "histogram",
    "trayllm_time_per_output_token_seconds": "histogram",
    "trayllm_request_queue_time_seconds": "histogram",
    "trayllm_requests": "counter",
    "trayllm_prompt_tokens": "counter",
    "trayllm_generation_tokens": "counter",
    "trayllm_num_requests_waiting": "gauge",
    "trayllm_num_requests_running": "gauge",
    "trayllm_gpu_memory_used_bytes": "gauge",
    "trayllm_gpu_memory_total_bytes": "gauge",
    "trayllm_model_loaded": "gauge",
}


def _samples(metrics: DaemonMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def documents(make_gpu_record, make_cpu_record):
    return [
        to_document(make_gpu_record(request_id="a")),  # 1.5 s, ttft 0.25 s, 12 → 51 tokens
        to_document(
            make_cpu_record(
                request_id="b", duration_ns=4_000_000_000, ttft_ns=3_500_000_000, input_tokens=100, output_tokens=11
            )
        ),
        to_document(
            make_gpu_record(request_id="c", outcome=classify_outcome("cancelled"), output_tokens=1, input_tokens=5)
        ),
        to_document(
            make_gpu_record(
                request_id="d",
                outcome=classify_outcome("error", errors.QueueFull("full")),
                ttft_ns=None,
                queue_ns=None,
                input_tokens=None,
                output_tokens=None,
                duration_ns=2_000_000,
            )
        ),
    ]


def test_render_parses_and_counts_equal_the_records(documents):
    metrics = DaemonMetrics()
    for doc in documents:
        metrics.observe(doc)
    families = {
        f.name: f.type
        for f in text_string_to_metric_families(metrics.render().decode())
        if not f.name.endswith("_created")
    }  # prometheus_client's creation-time series
    assert families == EXPECTED_FAMILIES
    s = _samples(metrics)
    assert s[("trayllm_requests_total", (("error_type", "none"), ("outcome", "success")))] == 2
    assert s[("trayllm_requests_total", (("error_type", "cancelled"), ("outcome", "unknown")))] == 1
    assert s[("trayllm_requests_total", (("error_type", "queue_full"), ("outcome", "failure")))] == 1
    assert sum(v for (name, _), v in s.items() if name == "trayllm_requests_total") == len(documents)
    assert s[("trayllm_prompt_tokens_total", ())] == 12 + 100 + 5
    assert s[("trayllm_generation_tokens_total", ())] == 51 + 11 + 1
    assert s[("trayllm_e2e_request_latency_seconds_count", ())] == 4
    assert s[("trayllm_e2e_request_latency_seconds_sum", ())] == pytest.approx(1.5 + 4.0 + 1.5 + 0.002)
    assert s[("trayllm_time_to_first_token_seconds_count", ())] == 3
    # the 3 s edge for the TTFT objective: two of three first tokens came in under it
    assert s[("trayllm_time_to_first_token_seconds_bucket", (("le", "3.0"),))] == 2
    assert s[("trayllm_request_queue_time_seconds_count", ())] == 3
    # time per output token only where there are two tokens or more: (1.5 - 0.25) / 50 and (4 - 3.5) / 10
    assert s[("trayllm_time_per_output_token_seconds_count", ())] == 2
    assert s[("trayllm_time_per_output_token_seconds_sum", ())] == pytest.approx(0.025 + 0.05)


def test_state_gauges_and_absent_gpu():
    metrics = DaemonMetrics()
    metrics.set_state(waiting=3, running=2, loaded=True, vram_used=5 * 1024**3, vram_total=80 * 1024**3)
    s = _samples(metrics)
    assert s[("trayllm_num_requests_waiting", ())] == 3
    assert s[("trayllm_num_requests_running", ())] == 2
    assert s[("trayllm_model_loaded", ())] == 1
    assert s[("trayllm_gpu_memory_used_bytes", (("gpu", "0"),))] == 5 * 1024**3
    assert s[("trayllm_gpu_memory_total_bytes", (("gpu", "0"),))] == 80 * 1024**3
    metrics.set_state(waiting=0, running=0, loaded=False)  # NVML went away / CPU: no series, not a fake 0
    s = _samples(metrics)
    assert s[("trayllm_model_loaded", ())] == 0
    assert not [key for key in s if key[0].startswith("trayllm_gpu_memory")]


def test_labels_stay_bounded_and_registries_are_private(documents):
    metrics = DaemonMetrics()
    odd = dict(documents[3], error={"type": "made_up", "message": "?"})
    metrics.observe(odd)
    assert _samples(metrics)[("trayllm_requests_total", (("error_type", "other"), ("outcome", "failure")))] == 1
    other = DaemonMetrics()  # a second instance does not collide with the first
    assert _samples(other)[("trayllm_e2e_request_latency_seconds_count", ())] == 0
    assert REGISTRY.get_sample_value("trayllm_requests_total") is None
