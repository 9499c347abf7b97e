"""What telemetry costs per request: measured directly, and end to end with it on and off.

The direct measurement times the exact calls serving makes (building and queueing a record on
the inference thread) plus the background thread's formatting and writing, per record. The
end-to-end comparison runs the same sequential workload on a real daemon with
TRAYLLM_TELEMETRY=0 and =1, alternating, so drift on a shared machine hits both sides alike.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from trayllm.bench.startup import private_daemon, sequential_latencies
from trayllm.config import Settings


@dataclass(frozen=True)
class DirectCost:
    records: int
    serving_us_mean: float  # on the thread that serves (the inference thread)
    serving_us_p99: float
    background_us_mean: float  # formatting + write(2) on the writer thread, per record


@dataclass(frozen=True)
class EndToEnd:
    requests_per_side: int
    mean_ms_off: float
    mean_ms_on: float

    @property
    def difference_ms(self) -> float:
        return self.mean_ms_on - self.mean_ms_off


def measure_direct(records: int = 5000) -> DirectCost:
    """Time RequestRecorder.finished() as the engine calls it, then the writer's drain per record."""
    from trayllm.daemon.records import RequestContext, RequestRecorder
    from trayllm.engine.handle import RequestHandle
    from trayllm.engine.types import Finished, ModelInfo, RequestTimings, SamplingParams
    from trayllm.telemetry.metrics import DaemonMetrics
    from trayllm.telemetry.vram import NvmlProbe

    info = ModelInfo(
        name="bench",
        version="0123456789ab-fp32",
        source="/dev/null",
        device="cpu",
        dtype="fp32",
        quantization="none",
        context_length=8192,
    )
    with tempfile.TemporaryDirectory(prefix="trayllm-telemetry-") as tmp:
        settings = Settings(state_dir=tmp)
        recorder = RequestRecorder(settings, DaemonMetrics(), NvmlProbe(), lambda: info)
        samples = []
        for index in range(records):
            context = RequestContext.arriving(f"bench-{index:08d}", "bench", None)
            context.params = SamplingParams(max_tokens=64, temperature=0.2, top_p=0.9, repetition_penalty=1.1)
            handle = RequestHandle(context.request_id)
            now = time.monotonic()
            timings = RequestTimings(arrived=now - 1.0, started=now - 0.99, first_token=now - 0.9, finished=now)
            finished = Finished("stop", 40, 64, timings)
            began = time.perf_counter()
            recorder.finished(context, handle, finished)
            samples.append(time.perf_counter() - began)
        drain_began = time.perf_counter()
        recorder.close()
        drain = time.perf_counter() - drain_began
        lines = sum(1 for _ in (Path(tmp) / "requests.jsonl").open())
    if lines != records:
        raise RuntimeError(f"wrote {lines} records for {records} requests")
    samples.sort()
    return DirectCost(
        records=records,
        serving_us_mean=statistics.fmean(samples) * 1e6,
        serving_us_p99=samples[int(0.99 * (len(samples) - 1))] * 1e6,
        background_us_mean=drain / records * 1e6,
    )


def measure_end_to_end(
    settings: Settings, rounds: int, requests: int, max_tokens: int, timeout: float = 600.0
) -> EndToEnd:
    """Mean request latency with telemetry off and on, the sides alternating ``rounds`` times."""
    latencies: dict[str, list[float]] = {"0": [], "1": []}
    with tempfile.TemporaryDirectory(prefix="trayllm-telemetry-") as tmp:
        for index in range(rounds * 2):
            side = "0" if index % 2 == 0 else "1"
            workdir = Path(tmp) / f"run{index}"
            workdir.mkdir()
            env = {"TRAYLLM_TELEMETRY": side, "TRAYLLM_RATE_LIMIT_PER_MINUTE": "0"}
            with private_daemon(settings, workdir, timeout, env) as (client, _):
                latencies[side] += sequential_latencies(client, requests, max_tokens)
    return EndToEnd(
        requests_per_side=len(latencies["1"]),
        mean_ms_off=statistics.fmean(latencies["0"]) * 1e3,
        mean_ms_on=statistics.fmean(latencies["1"]) * 1e3,
    )


def to_markdown(direct: DirectCost, e2e: EndToEnd | None, command: str) -> str:
    lines = [
        f"### trayllm telemetry overhead, {time.strftime('%Y-%m-%d')}",
        "",
        f"- Command: `{command}`",
        f"- Direct, {direct.records} records: {direct.serving_us_mean:.1f} µs mean "
        f"({direct.serving_us_p99:.1f} µs p99) on the serving thread, plus {direct.background_us_mean:.1f} µs "
        f"per record on the writer thread; {direct.serving_us_mean + direct.background_us_mean:.1f} µs in all",
    ]
    if e2e is not None:
        total_ms = (direct.serving_us_mean + direct.background_us_mean) / 1000
        lines += [
            f"- End to end, {e2e.requests_per_side} requests per side: mean latency {e2e.mean_ms_off:.1f} ms off, "
            f"{e2e.mean_ms_on:.1f} ms on (difference {e2e.difference_ms:+.1f} ms, machine noise included)",
            f"- Direct cost as a share of the mean request latency: {100 * total_ms / e2e.mean_ms_off:.3f} %",
        ]
    return "\n".join(lines)
