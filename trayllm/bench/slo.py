"""What the SLO monitor costs: refilling its windows from a record file at start, and one evaluation tick.

Records are built with the daemon's own record builder (one request every 2 s, 1 in 997 a timeout,
first-token latency cycling 0.1-0.6 s), written to a temporary file, read back with the reader the
daemon uses and fed to a ``SloMonitor`` with the default objectives. The tick is judged at the time of
the last record, so every window is as full as the file allows (the error-rate window holds them all).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from trayllm import __version__
from trayllm.slo.monitor import SloMonitor
from trayllm.slo.objectives import DEFAULT_OBJECTIVES
from trayllm.telemetry.reader import iter_records
from trayllm.telemetry.record import RequestRecord, classify_outcome, to_document

SPACING_S = 2.0


@dataclass(frozen=True)
class SloCost:
    records: int
    file_mb: float
    refill_s: float
    tick_ms: float

    @property
    def refill_per_s(self) -> float:
        return self.records / self.refill_s if self.refill_s > 0 else float("inf")


def _write_records(path: Path, count: int, start: datetime) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(count):
            error = "timeout" if i % 997 == 0 else None
            outcome = classify_outcome("error" if error else "stop")
            record = RequestRecord(
                request_id=f"bench-{i:09d}",
                started=start + timedelta(seconds=i * SPACING_S),
                duration_ns=10**9,
                outcome=outcome if error is None else outcome._replace(error_type=error),
                service_version=__version__,
                host_name="bench",
                user="bench",
                ttft_ns=int((0.1 + (i % 50) / 100) * 1e9),
                output_tokens=32,
            )
            f.write(json.dumps(to_document(record)) + "\n")


def measure_slo(count: int, ticks: int = 20) -> SloCost:
    """Refill ``count`` records into a fresh monitor and time it, then time ``ticks`` evaluations."""
    start = datetime.now(timezone.utc) - timedelta(seconds=count * SPACING_S)
    with tempfile.TemporaryDirectory(prefix="trayllm-slo-bench-") as tmp:
        path = Path(tmp) / "requests.jsonl"
        _write_records(path, count, start)
        size = path.stat().st_size
        monitor = SloMonitor(DEFAULT_OBJECTIVES)
        began = time.perf_counter()
        read = monitor.refill(iter_records(path))
        refill_s = time.perf_counter() - began
    now = start.timestamp() + count * SPACING_S
    began = time.perf_counter()
    for _ in range(ticks):
        monitor.evaluate(now)
    tick_ms = (time.perf_counter() - began) / ticks * 1000
    return SloCost(read, round(size / 1e6, 1), refill_s, tick_ms)


def to_markdown(cost: SloCost, command: str) -> str:
    return "\n".join(
        [
            f"`{command}`",
            "",
            "| records | file | refill at start | records/s | one evaluation tick |",
            "|---|---|---|---|---|",
            f"| {cost.records:,} | {cost.file_mb:g} MB | {cost.refill_s:.2f} s | {cost.refill_per_s:,.0f} | "
            f"{cost.tick_ms:.1f} ms |",
        ]
    )
