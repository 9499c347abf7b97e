"""The shipper against the wire-level stand-in: exactly-once delivery through outages, 429 storms, dropped
connections, rotation and restarts; dead letters; the one-shipper lock. The rotating tail on its own is tested
in tests/telemetry/test_tail.py."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from es_standin import ElasticStandIn
from waiting import wait_for

from trayllm import __version__
from trayllm.config import Settings, load_settings
from trayllm.elastic.connection import ElasticTarget
from trayllm.elastic.shipper import DEAD_LETTER, Shipper
from trayllm.elastic.templates import install
from trayllm.errors import ElasticError
from trayllm.telemetry.record import RequestRecord, classify_outcome, to_document
from trayllm.telemetry.writer import RecordWriter

REQUESTS = "logs-trayllm.requests-default"
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def document(i: int, prompt: str | None = None) -> dict:
    """A request record; with ``prompt``, one logged with its content (the ``log_content`` setting)."""
    record = RequestRecord(
        request_id=f"req-{i:06d}",
        started=T0 + timedelta(seconds=i),
        duration_ns=10**8,
        outcome=classify_outcome("stop"),
        service_version=__version__,
        host_name="box",
        user="u",
        ttft_ns=5 * 10**7,
        output_tokens=8,
        input_messages=None if prompt is None else [{"role": "user", "content": prompt}],
        output_text=None if prompt is None else "ok",
    )
    return to_document(record, include_content=prompt is not None)


@pytest.fixture
def standin() -> ElasticStandIn:
    server = ElasticStandIn()
    yield server
    server.close()


def settings_for(tmp_path: Path, standin: ElasticStandIn, **extra: object) -> Settings:
    return load_settings({"state_dir": str(tmp_path / "state"), "es_url": standin.url, **extra}, environ={})


def shipper_for(settings: Settings, **kw: object) -> Shipper:
    es = ElasticTarget.from_settings(settings).client(timeout=5)
    shipper = Shipper(settings, es, initial_backoff=0.02, max_backoff=0.2, **kw)
    shipper.open()
    return shipper


def run_in_thread(shipper: Shipper) -> threading.Thread:
    thread = threading.Thread(target=shipper.run, kwargs={"poll_s": 0.02}, daemon=True)
    thread.start()
    return thread


def test_ten_thousand_records_through_outage_429s_dropped_connection_rotations_and_a_restart(
    tmp_path: Path, standin: ElasticStandIn
) -> None:
    """Issue 5, acceptance 1."""
    settings = settings_for(tmp_path, standin, ship_batch=250)
    install(ElasticTarget.from_settings(settings).client(), standin.url)
    # ~520 bytes a record: rotating at 600 kB gives a new file every ~1150 records; 20 backups keep them all
    writer = RecordWriter(settings.records_path, max_bytes=600_000, backups=20)
    written = 0

    def write(n: int) -> None:
        nonlocal written
        for _ in range(n):
            writer.write(document(written))
            written += 1

    def rotations() -> int:
        return len(list(settings.records_path.parent.glob("requests.jsonl.*")))

    shipper = shipper_for(settings)
    thread = run_in_thread(shipper)
    write(2500)
    wait_for(lambda: len(standin.ids(REQUESTS)) == 2500, timeout=30)

    standin.down()  # Elasticsearch goes away; the daemon keeps writing, and the file rotates twice
    before = rotations()
    write(3000)
    wait_for(lambda: rotations() >= before + 2, timeout=30)
    wait_for(lambda: shipper.stats.state == "backing off" and shipper.stats.retries >= 2, timeout=30)
    assert shipper.backlog_bytes() > 1_000_000  # visible to `trayllm status`

    shipper.stop()  # the shipper restarts while Elasticsearch is still down
    thread.join(10)
    shipper.close()
    shipper = shipper_for(settings)
    thread = run_in_thread(shipper)

    standin.reject_bulks(5, status=429)  # it comes back overloaded: a storm of whole-request 429s,
    standin.reject_items(300)  # then 429s for single documents
    standin.up()
    wait_for(lambda: standin._reject_items == 0, timeout=30)
    standin.drop_after_store(1)  # then it stores one bulk and drops the connection before answering
    write(2500)
    wait_for(lambda: len(standin.ids(REQUESTS)) >= 8000, timeout=60)
    standin.slow(0.05)  # and a slow patch
    write(2000)
    standin.slow(0.0)
    writer.close()
    assert written == 10_000
    wait_for(lambda: shipper.backlog_bytes() == 0 and shipper.stats.state == "idle", timeout=60)
    shipper.stop()
    thread.join(10)
    shipper.close()

    assert standin.ids(REQUESTS) == {f"req-{i:06d}" for i in range(10_000)}
    assert max(standin.indexed.values()) == 1, "an id was indexed twice"
    assert shipper.stats.duplicates >= 1  # the dropped bulk was sent again and came back 409
    assert shipper.stats.dead_lettered == 0
    assert not (settings.shipping_path / DEAD_LETTER).exists()


def test_a_document_refused_for_good_goes_to_the_dead_letter_file_and_the_rest_ships(
    tmp_path: Path, standin: ElasticStandIn
) -> None:
    settings = settings_for(tmp_path, standin)
    install(ElasticTarget.from_settings(settings).client(), standin.url)
    settings.records_path.parent.mkdir(parents=True)
    good = [document(i) for i in range(3)]
    bad = document(99)
    bad["event"]["duration"] = "slow"  # a long field Elasticsearch cannot parse
    lines = [json.dumps(good[0]), json.dumps(bad), "not json at all", json.dumps(good[1]), json.dumps(good[2])]
    settings.records_path.write_text("\n".join(lines) + "\n")
    shipper = shipper_for(settings)
    stats = shipper.run(once=True)
    shipper.close()
    assert standin.ids(REQUESTS) == {"req-000000", "req-000001", "req-000002"}
    assert (stats.delivered, stats.dead_lettered) == (3, 2)
    letters = [json.loads(line) for line in (settings.shipping_path / DEAD_LETTER).read_text().splitlines()]
    assert [(d["status"], d["id"]) for d in letters] == [(None, None), (400, "req-000099")]
    assert letters[0]["reason"] == "not valid JSON" and letters[0]["record"] == "not json at all"
    assert "document_parsing_exception" in letters[1]["reason"] and letters[1]["record"]["event"]["duration"] == "slow"
    assert "failed to parse field [event.duration] of type [long]" in letters[1]["reason"]
    # shipping again sends nothing: the position moved past the dead letters too
    again = shipper_for(settings)
    assert again.run(once=True).delivered == 0 and standin.bulk_requests == 1
    again.close()


def test_one_shipper_per_state_directory(tmp_path: Path, standin: ElasticStandIn) -> None:
    settings = settings_for(tmp_path, standin)
    first = shipper_for(settings)
    with pytest.raises(ElasticError, match=r"another shipper \(pid \d+\) is already shipping"):
        shipper_for(settings)
    first.close()
    shipper_for(settings).close()  # free again


def test_alerts_ship_to_their_own_stream(tmp_path: Path, standin: ElasticStandIn) -> None:
    from trayllm.telemetry.alert_record import alert_document

    settings = settings_for(tmp_path, standin)
    install(ElasticTarget.from_settings(settings).client(), standin.url)
    with RecordWriter(settings.alerts_path, 0, 1) as writer:
        writer.write(
            alert_document(
                event_id="b-1",
                key="oom",
                state="firing",
                severity="critical",
                message="oom",
                at=time.time(),
                value=None,
                threshold=None,
                host="box",
            )
        )
    shipper = shipper_for(settings)
    shipper.run(once=True)
    shipper.close()
    assert standin.ids("logs-trayllm.alerts-default") == {"b-1"} and standin.ids(REQUESTS) == set()


def test_a_busy_daemon_defers_shipping_but_never_for_longer_than_the_limit(
    tmp_path: Path, standin: ElasticStandIn
) -> None:
    settings = settings_for(tmp_path, standin, ship_batch=10)
    install(ElasticTarget.from_settings(settings).client(), standin.url)
    with RecordWriter(settings.records_path, 0, 1) as writer:
        for i in range(30):
            writer.write(document(i))
    busy = threading.Event()
    busy.set()
    es = ElasticTarget.from_settings(settings).client(timeout=5)
    shipper = Shipper(settings, es, busy=busy.is_set, max_defer_s=0.5)
    shipper.open()
    thread = run_in_thread(shipper)
    time.sleep(0.3)
    assert standin.bulk_requests == 0 and shipper.stats.state == "deferred while serving"
    wait_for(lambda: standin.bulk_requests >= 1, timeout=5)  # the limit passed: one batch goes anyway
    first = time.monotonic()
    wait_for(lambda: standin.bulk_requests >= 2, timeout=5)
    assert time.monotonic() - first >= 0.25  # ... and then the next waits again (0.5 s, less polling slack)
    busy.clear()  # idle: the rest goes at once
    wait_for(lambda: len(standin.ids(REQUESTS)) == 30, timeout=5)
    shipper.stop()
    thread.join(5)
    shipper.close()


def test_records_around_a_line_torn_by_a_crash_ship_and_the_torn_line_is_counted(
    tmp_path: Path, standin: ElasticStandIn
) -> None:
    from trayllm import api_status
    from trayllm.cli.render import format_status

    settings = settings_for(tmp_path, standin)
    install(ElasticTarget.from_settings(settings).client(), standin.url)
    with RecordWriter(settings.records_path, 0, 1) as writer:
        writer.write(document(0))
        writer.write(document(1))
    fragment = json.dumps(document(2)).encode()[:40]
    with settings.records_path.open("ab") as f:
        f.write(fragment)  # the daemon was killed in the middle of req-000002's line
    shipper = shipper_for(settings)
    shipper.run(once=True)
    assert standin.ids(REQUESTS) == {"req-000000", "req-000001"}
    assert shipper.stats.backlog_bytes == len(fragment)  # waiting on it: it may still be being written
    with RecordWriter(settings.records_path, 0, 1) as writer:  # the daemon's restart
        writer.write(document(3))
    stats = shipper.run(once=True)
    shipper.close()
    assert standin.ids(REQUESTS) == {"req-000000", "req-000001", "req-000003"}
    assert (stats.delivered, stats.unreadable, stats.dead_lettered, stats.backlog_bytes) == (3, 1, 1, 0)
    letters = [json.loads(line) for line in (settings.shipping_path / DEAD_LETTER).read_text().splitlines()]
    assert [letter["record"] for letter in letters] == [fragment.decode()]
    status = api_status.DaemonStatus(
        state="ready",
        model=None,
        queue=api_status.QueueStatus(
            depth=0, capacity=1, in_flight=0, max_batch=1, backlog_cap_active=False, backlog_max_tokens=0
        ),
        requests=api_status.RequestCounters(),
        uptime_s=1.0,
        pid=1,
        version=__version__,
        shipping=api_status.ShippingStatus(**stats.to_dict()),
    )
    assert "1 dead-lettered (1 unreadable: torn or damaged lines)" in format_status(status)


def test_bulk_bodies_stay_under_the_byte_limit_and_a_record_over_it_alone_is_dead_lettered(
    tmp_path: Path, standin: ElasticStandIn
) -> None:
    """Issue 18, acceptance 4: 3,000 records of ~600 bytes, six of them carrying a 30 kB prompt, with bulk
    bodies bounded at 20 kB (ship_batch 1,000 would be ~600 kB)."""
    settings = settings_for(tmp_path, standin, es_bulk_max_bytes=20_000)
    install(ElasticTarget.from_settings(settings).client(), standin.url)
    huge = {i for i in range(3000) if i % 500 == 7}
    with RecordWriter(settings.records_path, 0, 1) as writer:
        for i in range(3000):
            writer.write(document(i, prompt="tell me everything " * 1600 if i in huge else None))
    shipper = shipper_for(settings)
    stats = shipper.run(once=True)
    shipper.close()

    assert standin.ids(REQUESTS) == {f"req-{i:06d}" for i in range(3000) if i not in huge}
    assert max(standin.indexed.values()) == 1 and (stats.delivered, stats.dead_lettered) == (2994, 6)
    assert 15_000 < standin.max_bulk_body <= 20_000  # filled close to the limit, never past it
    letters = [json.loads(line) for line in (settings.shipping_path / DEAD_LETTER).read_text().splitlines()]
    assert [letter["id"] for letter in letters] == [f"req-{i:06d}" for i in sorted(huge)]
    assert all(letter["status"] is None and "over es_bulk_max_bytes (20000)" in letter["reason"] for letter in letters)
    assert letters[0]["record"]["gen_ai"]["input"]["messages"][0]["content"].startswith("tell me everything")
    assert shipper.backlog_bytes() == 0


def test_a_413_halves_the_bulk_until_it_fits_and_a_record_too_large_alone_is_dead_lettered(tmp_path: Path) -> None:
    """A cluster whose http.max_content_length (15 kB here) is below es_bulk_max_bytes: the shipper cannot know
    it beforehand, so the 413 is what tells it. The queue moves on, and nothing is sent twice."""
    standin = ElasticStandIn(max_content_length=15_000)
    try:
        settings = settings_for(tmp_path, standin, es_bulk_max_bytes=1_000_000)
        install(ElasticTarget.from_settings(settings).client(), standin.url)
        with RecordWriter(settings.records_path, 0, 1) as writer:
            for i in range(200):
                writer.write(document(i, prompt="x" * 20_000 if i == 150 else None))
        shipper = shipper_for(settings, sleep=lambda _: pytest.fail("a 413 was handled as a pause to wait out"))
        stats = shipper.run(once=True)
        shipper.close()
    finally:
        standin.close()
    assert standin.ids(REQUESTS) == {f"req-{i:06d}" for i in range(200) if i != 150}
    assert max(standin.indexed.values()) == 1 and stats.duplicates == 0 and stats.retries == 0
    (letter,) = [json.loads(line) for line in (settings.shipping_path / DEAD_LETTER).read_text().splitlines()]
    assert (letter["id"], letter["status"]) == ("req-000150", 413)
    assert "413: over its http.max_content_length" in letter["reason"] and "even alone" in letter["reason"]
    assert "sending it in halves" in (stats.last_error or "")
