"""TokenBucket on a fake clock, RequestHandle delivery, and Scheduler admission on a tiny random model.

The tiny model is a real LlamaForCausalLM (random weights, the real SmolLM2 tokenizer), so the
inference thread runs for real in milliseconds; what it writes is noise, which is all these tests need.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import Callable

import pytest
from scheduling import PROMPT, greedy, run

from trayllm.engine.handle import RequestHandle
from trayllm.engine.ratelimit import TokenBucket
from trayllm.engine.scheduler import Scheduler
from trayllm.engine.types import Finished, RequestTimings, TokenText
from trayllm.errors import QueueFull, RateLimited, RequestTimeout, ShuttingDown


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- TokenBucket -------------------------------------------------------------------------------


def test_burst_then_refused_with_the_hand_computed_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=60, burst=3, clock=clock)  # one token a second
    assert [bucket.take("alice") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("alice") == pytest.approx(1.0)
    clock.now += 0.25
    assert bucket.take("alice") == pytest.approx(0.75)
    clock.now += 0.75
    assert bucket.take("alice") == 0.0
    assert bucket.take("alice") == pytest.approx(1.0)


def test_refill_over_time_is_capped_at_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=120, burst=2, clock=clock)  # one token every 0.5 s
    assert bucket.take("u") == 0.0
    assert bucket.take("u") == 0.0
    assert bucket.take("u") == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take("u") == 0.0
    clock.now += 3600  # a long idle time refills only up to the burst
    assert [bucket.take("u") for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


def test_partial_refill_accumulates_across_refusals() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=60, burst=1, clock=clock)
    assert bucket.take("u") == 0.0
    for waited in (0.2, 0.4, 0.6, 0.8):
        clock.now += 0.2
        assert bucket.take("u") == pytest.approx(1.0 - waited)
    clock.now += 0.2
    assert bucket.take("u") == 0.0


def test_users_have_independent_buckets() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=60, burst=2, clock=clock)
    assert bucket.take("alice") == 0.0 and bucket.take("alice") == 0.0
    assert bucket.take("alice") > 0
    assert bucket.take("bob") == 0.0 and bucket.take("bob") == 0.0
    assert bucket.take("bob") == pytest.approx(1.0)
    clock.now += 0.5
    assert bucket.take("alice") == pytest.approx(0.5)
    assert bucket.take("carol") == 0.0


def test_rate_zero_is_unlimited() -> None:
    bucket = TokenBucket(per_minute=0, burst=1, clock=FakeClock())
    assert all(bucket.take("u") == 0.0 for _ in range(1000))


def test_waiting_the_returned_time_is_enough() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=30, burst=4, clock=clock)
    for _ in range(4):
        assert bucket.take("u") == 0.0
    wait = bucket.take("u")
    assert wait == pytest.approx(2.0)
    clock.now += wait
    assert bucket.take("u") == 0.0


def test_burst_zero_is_refused_by_the_settings() -> None:
    """A bucket of size 0 never holds a whole token and would refuse everyone forever."""
    from trayllm.config import load_settings
    from trayllm.errors import ConfigError

    with pytest.raises(ConfigError, match="rate_limit_burst"):
        load_settings({"rate_limit_burst": 0}, environ={})


# -- RequestHandle -----------------------------------------------------------------------------


def _finished(reason: str = "stop") -> Finished:
    return Finished(reason, 3, 2, RequestTimings())  # type: ignore[arg-type]


def test_sync_handle_yields_events_until_finished() -> None:
    handle = RequestHandle("r1")
    handle.emit(TokenText("a"))
    handle.emit(TokenText("b"))
    handle.emit(_finished())
    handle.emit(TokenText("after the end"))
    events = list(handle.iter_events(timeout=1))
    assert [type(e) for e in events] == [TokenText, TokenText, Finished]
    assert [e.text for e in events[:2]] == ["a", "b"]


def test_sync_handle_times_out_when_nothing_arrives() -> None:
    handle = RequestHandle("r1")
    with pytest.raises(queue.Empty):
        next(handle.iter_events(timeout=0.05))


def test_cancel_is_visible() -> None:
    handle = RequestHandle("r1")
    assert not handle.cancelled
    handle.cancel()
    assert handle.cancelled


def test_async_handle_receives_events_from_another_thread() -> None:
    async def main() -> list[object]:
        handle = RequestHandle("r1", asyncio.get_running_loop())

        def produce() -> None:
            for text in ("x", "y"):
                handle.emit(TokenText(text))
            handle.emit(_finished())

        thread = threading.Thread(target=produce)
        thread.start()
        events = [event async for event in handle.events()]
        thread.join()
        return events

    events = asyncio.run(asyncio.wait_for(main(), timeout=5))
    assert events[:2] == [TokenText("x"), TokenText("y")]
    assert isinstance(events[2], Finished) and len(events) == 3


def test_emitting_to_a_closed_loop_cancels_the_request() -> None:
    loop = asyncio.new_event_loop()
    handle = RequestHandle("r1", loop)
    loop.close()
    handle.emit(TokenText("nobody listens"))
    assert handle.cancelled


# -- Scheduler on a tiny random model ------------------------------------------------------------


def test_requests_run_to_their_length(make_scheduler: Callable[..., Scheduler]) -> None:
    finished: list[Finished] = []
    scheduler = make_scheduler()
    handles = [RequestHandle(f"r{i}", on_finished=lambda _handle, fin: finished.append(fin)) for i in range(3)]
    for i, handle in enumerate(handles):
        scheduler.submit(handle, "u", PROMPT[: 3 + i], greedy(5 + i))
    results = [run(h) for h in handles]
    for i, (_, fin) in enumerate(results):
        assert (fin.reason, fin.completion_tokens, fin.prompt_tokens) == ("length", 5 + i, 3 + i)
        t = fin.timings
        assert t.started is not None and t.first_token is not None and t.finished is not None
        assert t.arrived <= t.started <= t.first_token <= t.finished
    assert len(finished) == 3
    counters = scheduler.counters
    assert (counters.completed, counters.tokens_out, counters.tokens_in) == (3, 5 + 6 + 7, 3 + 4 + 5)
    assert scheduler.idle() and scheduler.in_flight == 0


def test_refused_after_stop_accepting(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler(start=False)
    scheduler.stop_accepting()
    with pytest.raises(ShuttingDown):
        scheduler.submit(RequestHandle("r"), "u", PROMPT, greedy(4))
    assert scheduler.counters.rejected == 1


def test_rate_limited_per_user(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler(start=False, rate_limit_per_minute=60, rate_limit_burst=2)
    scheduler.submit(RequestHandle("a1"), "alice", PROMPT, greedy(4))
    scheduler.submit(RequestHandle("a2"), "alice", PROMPT, greedy(4))
    with pytest.raises(RateLimited) as info:
        scheduler.submit(RequestHandle("a3"), "alice", PROMPT, greedy(4))
    assert info.value.retry_after is not None and 0.9 < info.value.retry_after <= 1.0
    assert "alice" in info.value.message
    scheduler.submit(RequestHandle("b1"), "bob", PROMPT, greedy(4))
    assert scheduler.queue_depth == 3
    assert scheduler.counters.rejected == 1


def test_queue_full(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler(start=False, queue_size=2, max_batch=1)
    scheduler.submit(RequestHandle("r1"), "u", PROMPT, greedy(4))
    scheduler.submit(RequestHandle("r2"), "u", PROMPT, greedy(4))
    with pytest.raises(QueueFull) as info:
        scheduler.submit(RequestHandle("r3"), "u", PROMPT, greedy(4))
    assert info.value.retry_after == 2.0  # two waiting, one batch slot
    assert scheduler.queue_depth == 2 and scheduler.counters.rejected == 1


def test_backlog_caps_max_tokens(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler(start=False, backlog_threshold=1, backlog_max_tokens=3)
    first, second, third = RequestHandle("r1"), RequestHandle("r2"), RequestHandle("r3")
    assert not scheduler.backlogged
    scheduler.submit(first, "u", PROMPT, greedy(10))  # nothing was waiting: not capped
    assert scheduler.backlogged
    scheduler.submit(second, "u", PROMPT, greedy(10))
    scheduler.submit(third, "u", PROMPT, greedy(2))  # already under the cap
    assert (first.max_tokens_capped, second.max_tokens_capped, third.max_tokens_capped) == (False, True, False)
    scheduler.start()
    assert run(first)[1].completion_tokens == 10
    assert run(second)[1].completion_tokens == 3
    assert run(third)[1].completion_tokens == 2


def test_cancelled_while_waiting(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler(start=False)
    handle = RequestHandle("r")
    scheduler.submit(handle, "u", PROMPT, greedy(50))
    handle.cancel()
    scheduler.start()
    text, fin = run(handle)
    assert (fin.reason, fin.completion_tokens, text) == ("cancelled", 0, "")
    assert fin.timings.started is None
    assert scheduler.counters.cancelled == 1 and scheduler.counters.tokens_in == 0


def test_timed_out_while_waiting(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler(start=False, request_timeout_s=0.0)
    handle = RequestHandle("r")
    scheduler.submit(handle, "u", PROMPT, greedy(5))
    scheduler.start()
    _, fin = run(handle)
    assert fin.reason == "error" and isinstance(fin.error, RequestTimeout)
    assert scheduler.counters.failed == 1


def test_timed_out_while_running(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler(request_timeout_s=0.3)
    handle = RequestHandle("r")
    scheduler.submit(handle, "u", PROMPT, greedy(1_000_000))
    _, fin = run(handle)
    assert fin.reason == "error" and isinstance(fin.error, RequestTimeout)
    assert "0.3 s" in fin.error.message
    assert 0 < fin.completion_tokens < 1_000_000


def test_stop_cancels_running_and_fails_waiting(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler(max_batch=1)
    running, waiting = RequestHandle("running"), RequestHandle("waiting")
    scheduler.submit(running, "u", PROMPT, greedy(1_000_000))
    events = running.iter_events(timeout=30)
    assert isinstance(next(events), TokenText)  # it is decoding now
    scheduler.submit(waiting, "u", PROMPT, greedy(5))
    scheduler.stop()
    assert not scheduler._thread.is_alive()
    last = [e for e in events][-1]
    assert isinstance(last, Finished) and last.reason == "cancelled"
    _, fin = run(waiting, timeout=5)
    assert fin.reason == "error" and isinstance(fin.error, ShuttingDown)
    assert scheduler.in_flight == 0


def test_idle_is_never_true_while_a_request_is_being_admitted(make_scheduler: Callable[..., Scheduler]) -> None:
    """idle() never says True between a job leaving the queue and being counted in flight; if it did,
    a caller waiting for idleness before stopping could cancel a request instead of finishing it.

    The queue is replaced by a deque that, right after each pop, asks idle() from another thread, as a
    racing waiter would (a fixed idle() may block on the scheduler's lock until the admission is done).
    """
    scheduler = make_scheduler(start=False)
    answers: list[bool] = []
    askers: list[threading.Thread] = []

    class Probe(deque):  # type: ignore[type-arg]
        def popleft(self) -> object:
            job = super().popleft()
            asker = threading.Thread(target=lambda: answers.append(scheduler.idle()))
            asker.start()
            asker.join(0.2)
            askers.append(asker)
            return job

    scheduler._pending = Probe()
    handle = RequestHandle("r")
    scheduler.submit(handle, "u", PROMPT, greedy(1_000_000))
    assert not scheduler.idle()
    scheduler.start()
    events = handle.iter_events(timeout=30)
    assert isinstance(next(events), TokenText)  # admitted and decoding
    for asker in askers:
        asker.join(5)
    handle.cancel()
    assert [e for e in events][-1].reason == "cancelled"  # type: ignore[union-attr]
    assert answers == [False]


def test_submit_after_stop_is_refused(make_scheduler: Callable[..., Scheduler]) -> None:
    """After stop() the inference thread is gone: a late submit() is refused rather than queued forever."""
    scheduler = make_scheduler()
    scheduler.stop()
    handle = RequestHandle("late")
    with pytest.raises(ShuttingDown):
        scheduler.submit(handle, "u", PROMPT, greedy(2))


# -- timings -----------------------------------------------------------------------------------


def test_timings_and_decode_rate() -> None:
    timings = RequestTimings(arrived=10.0, started=10.5, first_token=11.0, finished=13.0)
    assert timings.queue_ms == pytest.approx(500.0)
    assert timings.first_token_ms == pytest.approx(1000.0)
    assert timings.total_ms == pytest.approx(3000.0)
    assert Finished("length", 5, 11, timings).decode_tokens_per_second == pytest.approx(5.0)  # 10 tokens in 2 s
    assert Finished("length", 5, 1, timings).decode_tokens_per_second is None
    unstarted = RequestTimings(arrived=10.0, finished=10.25)
    assert unstarted.queue_ms == pytest.approx(250.0) and unstarted.first_token_ms is None


def test_a_failing_finish_callback_does_not_fail_the_batch(make_scheduler: Callable[..., Scheduler]) -> None:
    """The callback writes records; if writing one raises, the other requests still finish normally."""
    scheduler = make_scheduler(max_batch=2)
    calls: list[str] = []

    def flaky(handle: RequestHandle, finished: Finished) -> None:
        calls.append(handle.request_id)
        if handle.request_id == "short":
            raise ValueError("cannot write this record")

    short, long = RequestHandle("short", on_finished=flaky), RequestHandle("long", on_finished=flaky)
    scheduler.submit(short, "u", PROMPT, greedy(1))
    scheduler.submit(long, "u", PROMPT, greedy(6))
    _, short_end = run(short)
    _, long_end = run(long)
    assert short_end.reason == "length" and long_end.reason == "length"
    assert long_end.completion_tokens == 6
    assert sorted(calls) == ["long", "short"]
