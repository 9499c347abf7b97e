"""Soak: a running daemon under steady, modest load for minutes or hours, watched for slow leaks.

A leak too small to see in a test shows as a trend over a long run: resident memory or open file
descriptors that keep climbing, or first-token latency that drifts up as something accumulates. So
the soak keeps ``concurrency`` streamed requests going, and every ``interval_s`` samples the daemon's
RSS and open fds (from /proc, so it must run on the daemon's machine, as the same user) together with
the first-token percentiles of the requests that finished in that interval. The report gives each
series' least-squares slope per hour over the run after its first sample (the warm-up: allocator
pools and caches fill once), and the change from the first to the last third of the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from trayllm.bench.load import PROMPTS, RequestResult, run_one
from trayllm.client import DaemonClient
from trayllm.slo.percentile import percentile


@dataclass(frozen=True)
class ProcessSample:
    """What /proc says of one process at one moment."""

    rss_mib: float
    open_fds: int
    threads: int


@dataclass(frozen=True)
class SoakSample:
    """One interval of the soak: the daemon's footprint at its end, and the requests that finished in it."""

    elapsed_s: float
    requests: int
    errors: int
    first_token_p50_ms: float | None
    first_token_p99_ms: float | None
    process: ProcessSample


@dataclass(frozen=True)
class Trend:
    """A series' drift: slope per hour after warm-up, and mean of the last third minus mean of the first."""

    slope_per_hour: float | None
    first_to_last_third: float | None


def read_process(pid: int, proc: Path = Path("/proc")) -> ProcessSample:
    """RSS, open fds and threads of ``pid``; OSError if it is gone or not ours to read."""
    fields = {}
    for line in (proc / str(pid) / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return ProcessSample(
        rss_mib=round(int(fields["VmRSS"][0]) / 1024, 1),
        open_fds=sum(1 for _ in (proc / str(pid) / "fd").iterdir()),
        threads=int(fields["Threads"][0]),
    )


def trend(times_s: Sequence[float], values: Sequence[float | None]) -> Trend:
    """The drift of ``values`` over ``times_s`` (seconds); None where there are too few points."""
    points = [(t, v) for t, v in zip(times_s, values, strict=True) if v is not None]
    thirds = len(points) // 3
    change = None
    if thirds:
        first = [v for _, v in points[:thirds]]
        last = [v for _, v in points[-thirds:]]
        change = round(sum(last) / len(last) - sum(first) / len(first), 2)
    fitted = points[1:]  # the first sample is the warm-up
    if len(fitted) < 3:
        return Trend(None, change)
    mean_t = sum(t for t, _ in fitted) / len(fitted)
    mean_v = sum(v for _, v in fitted) / len(fitted)
    spread = sum((t - mean_t) ** 2 for t, _ in fitted)
    if spread == 0:
        return Trend(None, change)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in fitted) / spread
    return Trend(round(slope * 3600, 2), change)


def run_soak(
    make_client: Callable[[], DaemonClient],
    pid: int,
    duration_s: float,
    concurrency: int,
    max_tokens: int,
    interval_s: float,
    on_sample: Callable[[SoakSample], None] | None = None,
) -> list[SoakSample]:
    """Keep ``concurrency`` streamed requests going for ``duration_s``; one SoakSample per ``interval_s``."""
    start = time.monotonic()
    deadline = start + duration_s
    finished: list[RequestResult] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(index: int) -> None:
        with make_client() as client:
            n = index
            while not stop.is_set() and time.monotonic() < deadline:
                result = run_one(client, PROMPTS[n % len(PROMPTS)], max_tokens)
                n += concurrency
                with lock:
                    finished.append(result)

    threads = [threading.Thread(target=worker, args=(i,), name=f"soak-{i}", daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    samples: list[SoakSample] = []
    try:
        next_at = start + interval_s
        while next_at <= deadline + 1e-6:
            stop.wait(max(0.0, next_at - time.monotonic()))
            with lock:
                batch, finished[:] = list(finished), []
            samples.append(_sample(time.monotonic() - start, batch, read_process(pid)))
            if on_sample is not None:
                on_sample(samples[-1])
            next_at += interval_s
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return samples


def _sample(elapsed_s: float, results: Sequence[RequestResult], process: ProcessSample) -> SoakSample:
    ttft_ms = [r.first_token_s * 1000 for r in results if r.error is None and r.first_token_s is not None]
    p50, p99 = percentile(ttft_ms, 50), percentile(ttft_ms, 99)
    return SoakSample(
        elapsed_s=round(elapsed_s, 1),
        requests=len(results),
        errors=sum(r.error is not None for r in results),
        first_token_p50_ms=None if p50 is None else round(p50, 1),
        first_token_p99_ms=None if p99 is None else round(p99, 1),
        process=process,
    )


def to_markdown(samples: Sequence[SoakSample], *, concurrency: int, max_tokens: int, command: str) -> str:
    """A section for docs/BENCHMARKS.md: the samples, then each series' trend."""
    lines = [
        f"`{command}` (concurrency {concurrency}, max_tokens {max_tokens}, temperature 0)",
        "",
        "| minute | requests | errors | first token p50 (ms) | first token p99 (ms) | RSS (MiB) | open fds | threads |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        lines.append(
            f"| {s.elapsed_s / 60:.1f} | {s.requests} | {s.errors} | {_cell(s.first_token_p50_ms)} "
            f"| {_cell(s.first_token_p99_ms)} | {s.process.rss_mib:.1f} | {s.process.open_fds} "
            f"| {s.process.threads} |"
        )
    times = [s.elapsed_s for s in samples]
    series: dict[str, list[float | None]] = {
        "RSS (MiB)": [s.process.rss_mib for s in samples],
        "open fds": [float(s.process.open_fds) for s in samples],
        "first token p99 (ms)": [s.first_token_p99_ms for s in samples],
    }
    lines += ["", "| series | slope per hour (after the first sample) | last third − first third |", "|---|---|---|"]
    for name, values in series.items():
        t = trend(times, values)
        lines.append(f"| {name} | {_cell(t.slope_per_hour)} | {_cell(t.first_to_last_third)} |")
    total = sum(s.requests for s in samples)
    errors = sum(s.errors for s in samples)
    lines += ["", f"{total} requests, {errors} errors."]
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"
