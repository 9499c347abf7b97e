"""What shipping costs and how fast it goes: records/s into Elasticsearch, and daemon latency with it on and off.

Throughput: ``records`` synthetic request records (the daemon's own record builder, with ids unique to the
run, so a second run against the same cluster is not all 409s) are written to a private state directory
and shipped once, as ``trayllm ship --once`` would, timing the shipper from the first read to the last
acknowledged bulk.

Latency: alternating daemons with ``es_url`` unset and set, each started on a record file already holding
``backlog`` records, so the shipping side is busy shipping while it serves: the mean latency of the same
sequential requests on both sides.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from trayllm import __version__
from trayllm.bench.startup import private_daemon, sequential_latencies
from trayllm.config import Settings
from trayllm.elastic.connection import ElasticTarget
from trayllm.elastic.shipper import Shipper
from trayllm.elastic.templates import install
from trayllm.telemetry.record import RequestRecord, classify_outcome, to_document
from trayllm.telemetry.writer import RecordWriter


@dataclass(frozen=True)
class Throughput:
    records: int
    seconds: float
    bulks: int

    @property
    def per_second(self) -> float:
        return self.records / self.seconds


@dataclass(frozen=True)
class Latency:
    requests_per_side: int
    backlog: int
    mean_ms_off: float
    mean_ms_on: float
    shipped_while_serving: int  # records the shipping side delivered by the end of its requests


def write_records(path: Path, count: int) -> None:
    """``count`` realistic request records with ids no earlier run used."""
    run = uuid.uuid4().hex[:8]
    start = datetime.now(timezone.utc) - timedelta(hours=1)
    with RecordWriter(path, max_bytes=50_000_000, backups=20) as writer:
        for i in range(count):
            writer.write(
                to_document(
                    RequestRecord(
                        request_id=f"bench-{run}-{i:08d}",
                        started=start + timedelta(milliseconds=i),
                        duration_ns=900_000_000,
                        outcome=classify_outcome("stop"),
                        service_version=__version__,
                        host_name="bench",
                        user="bench",
                        response_model="smollm2-135m-instruct",
                        model_version="bench",
                        input_tokens=40,
                        output_tokens=64,
                        ttft_ns=120_000_000,
                        queue_ns=1_000_000,
                        tokens_per_second=70.0,
                        http_status=200,
                    )
                )
            )


def measure_throughput(target: ElasticTarget, records: int) -> Throughput:
    es = target.client()
    install(es, target.url)
    with tempfile.TemporaryDirectory(prefix="trayllm-ship-bench-") as tmp:
        settings = Settings(state_dir=tmp)
        write_records(settings.records_path, records)
        shipper = Shipper(settings, es)
        shipper.open()
        began = time.perf_counter()
        stats = shipper.run(once=True)
        seconds = time.perf_counter() - began
        shipper.close()
    if stats.delivered + stats.duplicates != records:
        raise RuntimeError(f"shipped {stats.delivered + stats.duplicates} of {records} records: {stats}")
    return Throughput(records, seconds, -(-records // settings.ship_batch))


def measure_latency(
    settings: Settings,
    target: ElasticTarget,
    rounds: int,
    requests: int,
    max_tokens: int,
    backlog: int,
    timeout: float = 600.0,
) -> Latency:
    latencies: dict[bool, list[float]] = {False: [], True: []}
    shipped = 0
    install(target.client(), target.url)
    with tempfile.TemporaryDirectory(prefix="trayllm-ship-bench-") as tmp:
        for index in range(rounds * 2):
            shipping = index % 2 == 1
            workdir = Path(tmp) / f"run{index}"
            workdir.mkdir()
            write_records(workdir / "xdg_state_home" / "trayllm" / "requests.jsonl", backlog)
            env = {
                "TRAYLLM_RATE_LIMIT_PER_MINUTE": "0",
                "TRAYLLM_ES_URL": target.url if shipping else "",
                "TRAYLLM_ES_API_KEY": target.api_key,
                "TRAYLLM_ES_USERNAME": target.username,
                "TRAYLLM_ES_PASSWORD": target.password,
                "TRAYLLM_ES_CA_FILE": target.ca_file,
            }
            with private_daemon(settings, workdir, timeout, env) as (client, _):
                latencies[shipping] += sequential_latencies(client, requests, max_tokens)
                if shipping:
                    status = client.status().shipping
                    if status is None:
                        raise RuntimeError("the daemon did not ship: is es_url reaching it?")
                    shipped += status.delivered + status.duplicates
    return Latency(
        len(latencies[True]),
        backlog,
        statistics.fmean(latencies[False]) * 1e3,
        statistics.fmean(latencies[True]) * 1e3,
        shipped,
    )


def to_markdown(throughput: Throughput, latency: Latency | None, command: str) -> str:
    lines = [
        f"### trayllm shipping, {time.strftime('%Y-%m-%d')}",
        "",
        f"- Command: `{command}`",
        f"- Throughput: {throughput.records} records in {throughput.seconds:.2f} s = "
        f"**{throughput.per_second:,.0f} records/s** ({throughput.bulks} bulk requests)",
    ]
    if latency is not None:
        diff = latency.mean_ms_on - latency.mean_ms_off
        lines.append(
            f"- Daemon latency, {latency.requests_per_side} requests per side, shipping a backlog of "
            f"{latency.backlog:,} records on the shipping side: {latency.mean_ms_off:.1f} ms off, "
            f"{latency.mean_ms_on:.1f} ms on ({diff:+.1f} ms, {100 * diff / latency.mean_ms_off:+.1f} %); "
            f"records shipped while serving: {latency.shipped_while_serving:,}"
        )
    return "\n".join(lines)
