"""EventBus: ids, replay after Last-Event-ID (same boot, other boot, gap), live delivery from other threads,
slow subscribers, and closing. The SSE bytes are parsed back with the client's own parser."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from trayllm.client import _sse_messages
from trayllm.daemon.events import EventBus


def parse(chunks: list[bytes]) -> list[tuple[str, str | None, dict]]:
    lines = b"".join(chunks).decode().split("\n")
    return [(m.event, m.id, json.loads(m.data)) for m in _sse_messages(iter(lines))]


async def collect(bus: EventBus, last_event_id: str | None, *, until: int, timeout: float = 5.0) -> list:
    """Read the stream until ``until`` messages (hello included) arrived, then stop listening."""
    chunks: list[bytes] = []
    stream = bus.stream(last_event_id, lambda: {"state": "ready"}, keepalive_s=0.05)

    async def read() -> None:
        async for chunk in stream:
            chunks.append(chunk)
            if len(parse(chunks)) >= until:
                return

    await asyncio.wait_for(read(), timeout)
    await stream.aclose()
    return parse(chunks)


def test_ids_are_boot_and_sequence():
    bus = EventBus(boot_id="b00t")
    first = bus.publish("serving.paused", {"reason": "x"})
    second = bus.publish("serving.resumed", {})
    assert (first.id, second.id, bus.last_id) == ("b00t-1", "b00t-2", "b00t-2")
    assert first.data["reason"] == "x" and isinstance(first.data["at"], float)


async def test_hello_comes_first_without_an_id_and_no_history_without_last_event_id():
    bus = EventBus(boot_id="b")
    bus.publish("serving.paused", {})
    task = asyncio.create_task(collect(bus, None, until=2))
    await asyncio.sleep(0.05)
    bus.publish("serving.resumed", {})
    got = await task
    assert [(kind, eid) for kind, eid, _ in got] == [("hello", None), ("serving.resumed", "b-2")]
    assert got[0][2] == {"state": "ready", "boot_id": "b"}


async def test_reconnecting_with_last_event_id_replays_exactly_what_was_missed():
    bus = EventBus(boot_id="b")
    for i in range(5):
        bus.publish("e", {"i": i})
    got = await collect(bus, "b-2", until=4)
    assert [(kind, eid, data["i"]) for kind, eid, data in got[1:]] == [
        ("e", "b-3", 2),
        ("e", "b-4", 3),
        ("e", "b-5", 4),
    ]


async def test_another_boot_replays_everything_kept_and_a_gap_is_announced():
    bus = EventBus(capacity=3, boot_id="new")
    for i in range(5):
        bus.publish("e", {"i": i})
    got = await collect(bus, "old-17", until=5)  # the daemon restarted since the client's last event
    assert [kind for kind, _, _ in got] == ["hello", "gap", "e", "e", "e"]
    assert got[1][2] == {"after": "old-17", "oldest_kept": "new-3"}
    got = await collect(bus, "new-1", until=5)  # same boot, but events 2 was dropped from the buffer
    assert [eid for _, eid, _ in got[2:]] == ["new-3", "new-4", "new-5"] and got[1][0] == "gap"


async def test_events_published_from_other_threads_arrive_in_order():
    bus = EventBus(boot_id="b")
    task = asyncio.create_task(collect(bus, None, until=101))
    await asyncio.sleep(0.05)

    def publish() -> None:
        for i in range(100):
            bus.publish("e", {"i": i})

    thread = threading.Thread(target=publish)
    thread.start()
    got = await task
    thread.join()
    assert [data["i"] for _, _, data in got[1:]] == list(range(100))


async def test_close_ends_live_streams_and_later_ones_after_their_replay():
    bus = EventBus(boot_id="b")
    chunks: list[bytes] = []

    async def read_all() -> None:
        async for chunk in bus.stream(None, dict, keepalive_s=0.05):
            chunks.append(chunk)

    task = asyncio.create_task(read_all())
    await asyncio.sleep(0.2)  # long enough for keepalives
    bus.publish("daemon.shutting_down", {})
    bus.close()
    await asyncio.wait_for(task, 2)
    assert b": keepalive" in b"".join(chunks)
    assert [kind for kind, _, _ in parse(chunks)] == ["hello", "daemon.shutting_down"]
    late = [c async for c in bus.stream("b-0", dict)]  # after close: replay, then the end
    assert [kind for kind, _, _ in parse(late)] == ["hello", "daemon.shutting_down"]


async def test_a_subscriber_that_falls_behind_is_dropped_not_the_bus():
    bus = EventBus(boot_id="b", queue_limit=5)
    stream = bus.stream(None, dict)
    assert b"retry" in await stream.__anext__()
    await stream.__anext__()  # hello; now subscribed, and not reading
    for i in range(20):
        bus.publish("e", {"i": i})
    await asyncio.sleep(0.05)  # let the loop deliver
    rest = [c async for c in stream]
    assert [data["i"] for _, _, data in parse(rest)] == [0, 1, 2, 3, 4]  # then the stream ended
    assert bus.publish("e", {}).seq == 21  # publishing still works, and the lost ones are kept for replay
    assert len(bus.recent()) == 21


@pytest.mark.parametrize("bad", ["", "nonsense", "b-x", "-"])
async def test_a_malformed_last_event_id_replays_everything_kept(bad):
    bus = EventBus(boot_id="b")
    bus.publish("e", {})
    got = await collect(bus, bad or None, until=1 if not bad else 2)
    assert len(got) == (1 if not bad else 2)
