"""The scheduler under memory pressure, on the tiny CPU model: injected CUDA OOMs (fail, retry, isolation of
the running batch), the OOM report, a lost GPU, and VRAM admission and peaks against scripted GPUs."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import pytest
import torch
from gpu_double import ScriptedGpu, ScriptedGpus
from scheduling import PROMPT, greedy, run

from trayllm.engine.faults import FaultPlan, Faults
from trayllm.engine.handle import RequestHandle
from trayllm.engine.models import LoadedModel
from trayllm.engine.scheduler import Scheduler
from trayllm.engine.types import OomReport, TokenText
from trayllm.errors import EngineFailure, EngineOutOfMemory, ShuttingDown


def plan(**faults: object) -> FaultPlan:
    p = FaultPlan()
    p.set(Faults(**faults))  # type: ignore[arg-type]
    return p


def test_faults_validate_their_plan():
    assert Faults.from_json({"oom_at": "decode", "oom_count": 2}).oom_at == "decode"
    for bad, words in [
        ([], "JSON object"),
        ({"oom_at": "warmup"}, "oom_at"),
        ({"delay_s": -1}, "delay_s"),
        ({"explode": True}, "unknown fault fields: explode"),
        ({"oom_count": "x"}, "oom_count"),
        ({"fail_request": 5}, "fail_request"),
        ({"fail_after_tokens": -1}, "fail_after_tokens"),
    ]:
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
    make_scheduler: Callable[..., Scheduler],
) -> None:
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
        "prefill",
        ("doomed",),
        len(PROMPT),
        7,
        False,
    )
    assert report.allocated_bytes is None  # CPU: no allocator reading is invented
    assert "failed with 503" in report.message
    after = RequestHandle("after")
    scheduler.submit(after, "u", PROMPT, greedy(3))
    assert run(after)[1].reason == "length"
    assert scheduler.counters.failed == 1 and scheduler.counters.completed == 1


def test_a_prefill_oom_of_a_newcomer_leaves_the_running_batch_alone(make_scheduler: Callable[..., Scheduler]) -> None:
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


def test_oom_retry_runs_the_request_again_alone_with_half_the_budget(make_scheduler: Callable[..., Scheduler]) -> None:
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


def test_vram_admission_holds_a_request_whose_cache_and_prefill_would_pass_the_limit(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    # tiny model: KV 1 layer x 1 KV head x head dim 8 x 2 (K, V) x 4 bytes = 64 bytes per token; prefill
    # activations (6 x hidden 16 + 3 x intermediate 32) x 4 bytes = 768 bytes per prompt token, mask 4 bytes.
    # Two rows of PROMPT (6 tokens) + 600: KV 2 x 606 x 64 = 77,568; prefill 12 x 768 + 2 x 36 x 4 = 9,504;
    # 87,072 in all. Three: KV 116,352 + prefill 18 x 768 + 3 x 36 x 4 = 14,256: 130,608. Limit 80 % of 150,000.
    gpus = ScriptedGpus([ScriptedGpu(total=150_000)])
    scheduler = make_scheduler(start=False, memory=gpus, vram_limit=0.8, max_batch=8)
    first, second, third = RequestHandle("first"), RequestHandle("second"), RequestHandle("third")
    for handle in (first, second, third):
        scheduler.submit(handle, "u", PROMPT, greedy(600))
    scheduler.start()
    events = first.iter_events(timeout=30)
    assert isinstance(next(events), TokenText)
    assert scheduler.in_flight == 2 and scheduler.queue_depth == 1 and scheduler.vram_blocked
    first.cancel()  # room again: the third starts
    second.cancel()
    _, fin = run(third, timeout=60)
    assert fin.reason == "length" and fin.completion_tokens == 600
    assert not scheduler.vram_blocked


def test_admission_reads_every_gpu_the_model_is_on(make_scheduler: Callable[..., Scheduler]) -> None:
    # GPU 0 has all the room in the world; GPU 1 holds half the layers and is nearly full: it decides
    gpus = ScriptedGpus(
        [ScriptedGpu(0, total=10**9, kv_share=0.5), ScriptedGpu(1, total=150_000, in_use=100_000, kv_share=0.5)]
    )
    scheduler = make_scheduler(start=False, memory=gpus, vram_limit=0.8, max_batch=8)
    first, second = RequestHandle("first"), RequestHandle("second")
    for handle in (first, second):
        scheduler.submit(handle, "u", PROMPT, greedy(600))
    scheduler.start()
    assert isinstance(next(first.iter_events(timeout=30)), TokenText)
    assert scheduler.in_flight == 1 and scheduler.vram_blocked  # 100,000 + 38,784 + 9,504 > 120,000 on GPU 1
    first.cancel()
    assert run(second, timeout=60)[1].reason == "length"


def test_a_request_too_big_for_the_limit_still_runs_alone(make_scheduler: Callable[..., Scheduler]) -> None:
    gpus = ScriptedGpus([ScriptedGpu(total=100_000, in_use=90_000)])  # nothing fits under 80 % on paper
    scheduler = make_scheduler(memory=gpus, vram_limit=0.8)
    handle = RequestHandle("alone")
    scheduler.submit(handle, "u", PROMPT, greedy(5))
    assert run(handle)[1].reason == "length"


def test_the_pass_that_ran_out_is_charged_its_peak_and_the_next_request_only_its_own(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    gpus = ScriptedGpus([ScriptedGpu(total=100_000)], pass_peaks=[95_000] + [10_000] * 10)
    scheduler = make_scheduler(faults=plan(oom_at="prefill"), memory=gpus, oom_retry=True)
    handle = RequestHandle("retried")
    scheduler.submit(handle, "u", PROMPT, greedy(6))  # the prefill runs out; the retry runs alone
    _, retried = run(handle)
    after = RequestHandle("after")
    scheduler.submit(after, "u", PROMPT, greedy(3))
    _, fin = run(after)
    assert retried.reason == "length"
    assert retried.vram_peak_bytes == 95_000  # it took part in the pass that ran out: that is its peak
    assert (fin.vram_peak_bytes, fin.vram_total_bytes) == (10_000, 100_000)  # not the failed pass's 95,000


def test_a_failed_request_records_the_peak_of_its_failed_pass(make_scheduler: Callable[..., Scheduler]) -> None:
    gpus = ScriptedGpus([ScriptedGpu(total=100_000)], pass_peaks=[40_000, 97_000])
    scheduler = make_scheduler(faults=plan(oom_at="decode"), memory=gpus)
    handle = RequestHandle("doomed")
    scheduler.submit(handle, "u", PROMPT, greedy(6))
    _, fin = run(handle)
    assert isinstance(fin.error, EngineOutOfMemory) and fin.vram_peak_bytes == 97_000


def test_the_cache_is_released_only_once_the_failed_pass_lets_go_of_its_tensors(
    tiny: LoadedModel, make_scheduler: Callable[..., Scheduler]
) -> None:
    held: list[weakref.ref[torch.Tensor]] = []

    def run_out_of_memory(module: torch.nn.Module, args: object) -> None:
        activations = torch.ones(1024)  # a local of a frame the traceback keeps, like a real pass's tensors
        held.append(weakref.ref(activations))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    alive_at_release: list[bool] = []
    gpus = ScriptedGpus(on_release=lambda: alive_at_release.append(held[-1]() is not None))
    scheduler = make_scheduler(memory=gpus)
    hook = tiny.model.model.layers[0].register_forward_pre_hook(run_out_of_memory)
    try:
        handle = RequestHandle("doomed")
        scheduler.submit(handle, "u", PROMPT, greedy(4))
        assert isinstance(run(handle)[1].error, EngineOutOfMemory)
    finally:
        hook.remove()
    assert alive_at_release == [False]


def test_a_cublas_allocation_failure_is_handled_as_out_of_memory(
    tiny: LoadedModel, make_scheduler: Callable[..., Scheduler]
) -> None:
    def cublas_fails(module: torch.nn.Module, args: object) -> None:
        raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")

    reports: list[OomReport] = []
    scheduler = make_scheduler(memory=ScriptedGpus())
    scheduler.on_oom = reports.append
    hook = tiny.model.model.layers[0].register_forward_pre_hook(cublas_fails)
    try:
        handle = RequestHandle("cublas")
        scheduler.submit(handle, "u", PROMPT, greedy(4))
        fin = run(handle)[1]
    finally:
        hook.remove()
    assert isinstance(fin.error, EngineOutOfMemory) and fin.error.status_code == 503
    assert [r.request_ids for r in reports] == [("cublas",)]


def test_a_lost_gpu_fails_every_request_and_stops_the_scheduler(make_scheduler: Callable[..., Scheduler]) -> None:
    fatal: list[str] = []
    faults = FaultPlan()
    scheduler = make_scheduler(start=False, faults=faults, max_batch=1)
    scheduler.on_fatal = fatal.append
    running, waiting = RequestHandle("running"), RequestHandle("waiting")
    scheduler.submit(running, "u", PROMPT, greedy(50))
    scheduler.submit(waiting, "u", PROMPT, greedy(5))
    faults.set(Faults(lose_device_at="decode"))
    scheduler.start()
    for handle in (running, waiting):
        fin = run(handle)[1]
        assert isinstance(fin.error, EngineFailure) and "restarting" in fin.error.message
    [reason] = fatal
    assert "illegal memory access" in reason and scheduler.fatal == reason
    with pytest.raises(ShuttingDown):
        scheduler.submit(RequestHandle("later"), "u", PROMPT, greedy(5))
    scheduler._thread.join(timeout=5)
    assert not scheduler._thread.is_alive()


def test_a_failed_pass_on_a_gpu_that_still_works_fails_only_its_rows(
    tiny: LoadedModel, make_scheduler: Callable[..., Scheduler]
) -> None:
    def broken(module: torch.nn.Module, args: object) -> None:
        raise torch.AcceleratorError("CUDA error: invalid argument")  # not sticky: the GPU still runs work

    gpus = ScriptedGpus()
    scheduler = make_scheduler(memory=gpus)
    hook = tiny.model.model.layers[0].register_forward_pre_hook(broken)
    try:
        handle = RequestHandle("one")
        scheduler.submit(handle, "u", PROMPT, greedy(4))
        assert isinstance(run(handle)[1].error, EngineFailure)
    finally:
        hook.remove()
    after = RequestHandle("after")
    scheduler.submit(after, "u", PROMPT, greedy(3))
    assert run(after)[1].reason == "length" and scheduler.fatal is None


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
