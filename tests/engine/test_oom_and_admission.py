"""The scheduler under memory pressure, on the tiny CPU model: injected CUDA OOMs (fail, retry, isolation of
the running batch), the OOM report, and VRAM admission against a scripted memory reading."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from scheduling import PROMPT, greedy, run

from trayllm.engine.faults import FaultPlan, Faults
from trayllm.engine.scheduler import RequestHandle, Scheduler
from trayllm.engine.types import OomReport, TokenText
from trayllm.errors import EngineOutOfMemory


def plan(**faults: object) -> FaultPlan:
    p = FaultPlan()
    p.set(Faults(**faults))  # type: ignore[arg-type]
    return p


def test_faults_validate_their_plan():
    assert Faults.from_json({"oom_at": "decode", "oom_count": 2}).oom_at == "decode"
    for bad, words in [([], "JSON object"), ({"oom_at": "warmup"}, "oom_at"), ({"delay_s": -1}, "delay_s"),
                       ({"explode": True}, "unknown fault fields: explode"), ({"oom_count": "x"}, "oom_count"),
                       ({"fail_request": 5}, "fail_request"), ({"fail_after_tokens": -1}, "fail_after_tokens")]:
        with pytest.raises(ValueError, match=words):
            Faults.from_json(bad)


def test_an_injected_oom_is_a_real_cuda_oom_error_and_runs_out():
    p = plan(oom_at="prefill", oom_count=2)
    p.hit("decode")  # another phase: nothing
    for _ in range(2):
        with pytest.raises(torch.cuda.OutOfMemoryError, match="injected"):
            p.hit("prefill")
    p.hit("prefill")  # used up
    assert p.current["ooms_left"] == 0


def test_an_oom_fails_the_request_with_503_reports_it_and_the_next_one_runs(
        make_scheduler: Callable[..., Scheduler]) -> None:
    reports: list[OomReport] = []
    scheduler = make_scheduler(faults=plan(oom_at="prefill"))
    scheduler.on_oom = reports.append
    failing = RequestHandle("doomed")
    scheduler.submit(failing, "u", PROMPT, greedy(7))
    _, fin = run(failing)
    assert fin.reason == "error" and isinstance(fin.error, EngineOutOfMemory)
    assert fin.error.status_code == 503 and fin.error.retry_after == 2
    [report] = reports
    assert (report.phase, report.request_ids, report.prompt_tokens, report.max_tokens, report.retried) == (
        "prefill", ("doomed",), len(PROMPT), 7, False)
    assert report.allocated_bytes is None  # CPU: no allocator reading is invented
    assert "failed with 503" in report.message
    after = RequestHandle("after")
    scheduler.submit(after, "u", PROMPT, greedy(3))
    assert run(after)[1].reason == "length"
    assert scheduler.counters.failed == 1 and scheduler.counters.completed == 1


def test_a_prefill_oom_of_a_newcomer_leaves_the_running_batch_alone(
        make_scheduler: Callable[..., Scheduler]) -> None:
    faults = FaultPlan()
    scheduler = make_scheduler(faults=faults)
    running = RequestHandle("running")
    scheduler.submit(running, "u", PROMPT, greedy(40))
    events = running.iter_events(timeout=30)
    assert isinstance(next(events), TokenText)  # decoding now
    faults.set(Faults(oom_at="prefill"))
    newcomer = RequestHandle("newcomer")
    scheduler.submit(newcomer, "u", PROMPT, greedy(5))
    assert isinstance(run(newcomer)[1].error, EngineOutOfMemory)
    last = list(events)[-1]
    assert last.reason == "length" and last.completion_tokens == 40  # type: ignore[union-attr]


def test_a_decode_oom_fails_every_row_of_the_batch(make_scheduler: Callable[..., Scheduler]) -> None:
    reports: list[OomReport] = []
    scheduler = make_scheduler(start=False, faults=plan(oom_at="decode"), oom_retry=True)
    scheduler.on_oom = reports.append
    handles = [RequestHandle(f"r{i}") for i in range(3)]
    for h in handles:
        scheduler.submit(h, "u", PROMPT, greedy(10))
    scheduler.start()
    for h in handles:
        _, fin = run(h)
        assert isinstance(fin.error, EngineOutOfMemory)
        assert fin.completion_tokens == 1  # the first token came from the prefill: it cannot be taken back
    [report] = reports
    assert report.phase == "decode" and sorted(report.request_ids) == ["r0", "r1", "r2"]
    assert not report.retried  # they had streamed a token already: a retry would repeat it


def test_oom_retry_runs_the_request_again_alone_with_half_the_budget(
        make_scheduler: Callable[..., Scheduler]) -> None:
    reports: list[OomReport] = []
    scheduler = make_scheduler(faults=plan(oom_at="prefill"), oom_retry=True)
    scheduler.on_oom = reports.append
    handle = RequestHandle("retried")
    scheduler.submit(handle, "u", PROMPT, greedy(9))
    _, fin = run(handle)
    assert fin.reason == "length" and fin.error is None
    assert fin.completion_tokens == 4  # 9 // 2
    [report] = reports
    assert report.retried and "retrying once" in report.message
    assert scheduler.counters.completed == 1 and scheduler.counters.failed == 0


def test_a_retry_that_runs_out_of_memory_again_fails(make_scheduler: Callable[..., Scheduler]) -> None:
    reports: list[OomReport] = []
    scheduler = make_scheduler(faults=plan(oom_at="prefill", oom_count=2), oom_retry=True)
    scheduler.on_oom = reports.append
    handle = RequestHandle("twice")
    scheduler.submit(handle, "u", PROMPT, greedy(9))
    assert isinstance(run(handle)[1].error, EngineOutOfMemory)
    assert [r.retried for r in reports] == [True, False]


class ScriptedMemory:
    """A GPU of ``total`` bytes with ``allocated`` in use: what the allocator would say."""

    def __init__(self, allocated: int, total: int) -> None:
        self.allocated, self.total = allocated, total

    def __call__(self) -> tuple[int, int]:
        return self.allocated, self.total


def test_vram_admission_holds_a_request_whose_cache_would_pass_the_limit(
        make_scheduler: Callable[..., Scheduler]) -> None:
    # tiny model: 1 layer x 1 KV head x head dim 8 x 2 (K, V) x 4 bytes = 64 bytes per token
    per_token = 64
    memory = ScriptedMemory(allocated=0, total=100_000)  # limit 80 % = 80,000 bytes = 1,250 tokens
    scheduler = make_scheduler(start=False, memory=memory, vram_limit=0.8, max_batch=8)
    first, second = RequestHandle("first"), RequestHandle("second")
    # alone, the first may grow to 6 + 600 = 606 tokens (38,784 bytes): admitted. Two rows would be
    # 2 x 606 = 1,212 tokens: still fits. A third would be 1,818 tokens = 116,352 bytes: over the limit.
    scheduler.submit(first, "u", PROMPT, greedy(600))
    scheduler.submit(second, "u", PROMPT, greedy(600))
    third = RequestHandle("third")
    scheduler.submit(third, "u", PROMPT, greedy(600))
    scheduler.start()
    events = first.iter_events(timeout=30)
    assert isinstance(next(events), TokenText)
    assert scheduler.in_flight == 2 and scheduler.queue_depth == 1 and scheduler.vram_blocked
    assert 3 * (len(PROMPT) + 600) * per_token > 0.8 * memory.total >= 2 * (len(PROMPT) + 600) * per_token
    first.cancel()  # room again: the third starts
    second.cancel()
    _, fin = run(third, timeout=60)
    assert fin.reason == "length" and fin.completion_tokens == 600
    assert not scheduler.vram_blocked


def test_a_request_too_big_for_the_limit_still_runs_alone(make_scheduler: Callable[..., Scheduler]) -> None:
    memory = ScriptedMemory(allocated=50_000, total=100_000)  # nothing fits under 80 % on paper
    scheduler = make_scheduler(memory=memory, vram_limit=0.8)
    handle = RequestHandle("alone")
    scheduler.submit(handle, "u", PROMPT, greedy(5))
    assert run(handle)[1].reason == "length"


def test_no_admission_control_without_a_gpu_reading(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler(start=False, max_batch=4)  # CPU: the probe says None
    handles = [RequestHandle(f"r{i}") for i in range(4)]
    for h in handles:
        scheduler.submit(h, "u", PROMPT, greedy(50))
    scheduler.start()
    assert isinstance(next(handles[0].iter_events(timeout=30)), TokenText)
    assert scheduler.in_flight == 4 and not scheduler.vram_blocked
    for h in handles:
        h.cancel()
