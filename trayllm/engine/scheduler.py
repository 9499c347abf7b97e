"""Admission and the inference loop: a bounded queue, per-user rate limits, one thread that batches.

One thread runs every forward pass (CUDA state and the KV cache are not shared across
threads). Between two decode steps it drops finished, cancelled and timed-out rows and
prefills waiting requests into the free slots, so a new request starts within one step
instead of waiting for the whole batch to finish.

On CUDA a waiting request joins the batch only if the KV cache the batch could grow to, with it,
stays under ``vram_limit`` of the device (VRAM admission); otherwise it waits for rows to finish. A
request that would run alone is always started: nothing else can make room for it. A CUDA
out-of-memory in a forward pass fails the requests in that pass with a 503 (or, with ``oom_retry``,
puts those that produced nothing yet back to run once more alone with half the ``max_tokens``),
empties the allocator's cache, reports an ``OomReport`` through ``on_oom`` and carries on serving. A
failure in one request's own steps (its generator, its token pick, its decoding; see ``rows``) ends
that request alone; only a forward pass that raises fails the rows that were in it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace

import torch

from trayllm.config import Settings
from trayllm.engine.batch import RunningBatch, prefill
from trayllm.engine.faults import FaultPlan, Phase
from trayllm.engine.models import LoadedModel, eos_token_ids, kv_bytes_per_token
from trayllm.engine.ratelimit import TokenBucket
from trayllm.engine.rows import Job, own_failure
from trayllm.engine.sampling import pick_tokens
from trayllm.engine.types import (
    EngineEvent,
    Finished,
    FinishReason,
    OomReport,
    RequestTimings,
    SamplingParams,
    TokenText,
)
from trayllm.errors import (
    EngineFailure,
    EngineOutOfMemory,
    QueueFull,
    RateLimited,
    RequestError,
    RequestTimeout,
    ShuttingDown,
)

log = logging.getLogger(__name__)


class RequestHandle:
    """The caller's end of one request: its events, and a way to cancel it.

    Built on the caller's event loop (events arrive through ``call_soon_threadsafe``) or,
    with no loop, for a plain thread (events arrive through a thread-safe queue).
    """

    def __init__(self, request_id: str, loop: asyncio.AbstractEventLoop | None = None, *,
                 context: object = None, keep_text: bool = False) -> None:
        self.request_id = request_id
        self.context = context  # the caller's own bookkeeping, handed back with the finish callback
        self.text: list[str] = []  # the reply, kept only with keep_text (opt-in content records)
        self._keep_text = keep_text
        self._loop = loop
        self._async_events: asyncio.Queue[EngineEvent] | None = asyncio.Queue() if loop else None
        self._sync_events: queue.SimpleQueue[EngineEvent] = queue.SimpleQueue()
        self._cancelled = threading.Event()
        self.max_tokens_capped = False

    def cancel(self) -> None:
        """Ask the engine to stop this request at its next step."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def emit(self, event: EngineEvent) -> None:
        if self._keep_text and isinstance(event, TokenText):
            self.text.append(event.text)
        if self._loop is None or self._async_events is None:
            self._sync_events.put(event)
            return
        try:
            self._loop.call_soon_threadsafe(self._async_events.put_nowait, event)
        except RuntimeError:  # the caller's loop is gone; nobody is listening
            self.cancel()

    async def events(self) -> AsyncIterator[EngineEvent]:
        assert self._async_events is not None, "handle was made without an event loop"
        while True:
            event = await self._async_events.get()
            yield event
            if isinstance(event, Finished):
                return

    def iter_events(self, timeout: float | None = None) -> Iterator[EngineEvent]:
        while True:
            event = self._sync_events.get(timeout=timeout)
            yield event
            if isinstance(event, Finished):
                return


@dataclass
class Counters:
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    rejected: int = 0
    tokens_in: int = 0
    tokens_out: int = 0


MemoryProbe = Callable[[], "tuple[int, int] | None"]
"""(allocated bytes, device total bytes) of the model's GPU, or None where there is none (CPU)."""


def cuda_memory_probe(device: torch.device) -> MemoryProbe:
    """The allocator's reading for ``device``; None for a CPU device."""
    if device.type != "cuda":
        return lambda: None
    total = torch.cuda.get_device_properties(device).total_memory
    return lambda: (int(torch.cuda.memory_allocated(device)), int(total))


class Scheduler:
    """Owns the queue and the inference thread for one loaded model."""

    def __init__(self, loaded: LoadedModel, settings: Settings,
                 on_finished: Callable[[RequestHandle, Finished], None] | None = None, *,
                 faults: FaultPlan | None = None, memory: MemoryProbe | None = None) -> None:
        self._loaded = loaded
        self._settings = settings
        self._faults = faults or FaultPlan()
        self._memory = memory or cuda_memory_probe(loaded.device)
        self._kv_per_token = kv_bytes_per_token(loaded)
        self.on_oom: Callable[[OomReport], None] | None = None
        self.vram_blocked = False  # the head of the queue is waiting for VRAM
        self._eos = eos_token_ids(loaded)
        self._pad = int(loaded.tokenizer.pad_token_id)
        self._bucket = TokenBucket(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self._pending: deque[Job] = deque()
        self._wake = threading.Condition()
        self._batch: RunningBatch[Job] | None = None
        self._in_flight = 0
        self._accepting = True
        self._stopping = False
        self.on_finished = on_finished
        self.counters = Counters()
        self._thread = threading.Thread(target=self._run, name="trayllm-inference", daemon=True)

    # -- caller side -------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def backlogged(self) -> bool:
        return len(self._pending) >= self._settings.backlog_threshold

    def admit(self, user: str) -> None:
        """Refuse now what ``submit`` would refuse (ShuttingDown, QueueFull, RateLimited), taking ``user``'s
        allowance: a caller about to spend time on a request (tokenizing it) calls this first and then
        ``submit(..., admitted=True)``, so a caller over its limit costs the daemon nothing."""
        with self._wake:
            self._check_room()
            self._take_allowance(user)

    def submit(self, handle: RequestHandle, user: str, prompt: list[int], params: SamplingParams,
               arrived: float | None = None, *, admitted: bool = False) -> None:
        """Queue a request, or raise ShuttingDown / QueueFull / RateLimited at once.

        The queue is checked before the rate limit, so a request refused for a full queue
        does not use up the user's allowance; an ``admitted`` request used it in ``admit``.
        """
        settings = self._settings
        with self._wake:
            self._check_room()
            if not admitted:
                self._take_allowance(user)
            if self.backlogged and params.max_tokens > settings.backlog_max_tokens:
                params = SamplingParams(**{**params.__dict__, "max_tokens": settings.backlog_max_tokens})
                handle.max_tokens_capped = True
            timings = RequestTimings() if arrived is None else RequestTimings(arrived=arrived)
            self._pending.append(Job(handle, prompt, params, timings, timings.arrived + settings.request_timeout_s))
            self._wake.notify()

    def _check_room(self) -> None:
        """Raise ShuttingDown or QueueFull when no request may join the queue now (``_wake`` held)."""
        settings = self._settings
        if not self._accepting:
            self._reject()
            raise ShuttingDown("the daemon is shutting down", retry_after=5)
        if len(self._pending) >= settings.queue_size:
            self._reject()
            raise QueueFull(f"the queue is full ({settings.queue_size} waiting); retry shortly",
                            retry_after=max(1.0, len(self._pending) / max(1, settings.max_batch)))

    def _take_allowance(self, user: str) -> None:
        wait = self._bucket.take(user)
        if wait > 0:
            self._reject()
            raise RateLimited(f"rate limit for user {user!r} reached; retry in {wait:.1f} s", retry_after=wait)

    def _reject(self) -> None:
        self.counters.rejected += 1

    def stop_accepting(self) -> None:
        self._accepting = False

    def idle(self) -> bool:
        with self._wake:  # a job leaves the queue and enters the batch under this lock
            return not self._pending and self._in_flight == 0

    def stop(self) -> None:
        """Cancel whatever is left and end the inference thread."""
        with self._wake:
            self._accepting = False
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=30)

    # -- inference thread --------------------------------------------------------------

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            newcomers = self._next_newcomers()
            if newcomers is None:
                break
            phase: Phase = "prefill"
            try:
                if newcomers:
                    self._admit(newcomers)
                phase = "decode"
                if self._batch:
                    self._decode_step()
            except _PrefillFailed as failed:  # the running batch is untouched: only the newcomers failed
                self._pass_failed(failed.error, "prefill", [j for j in newcomers if not j.done])
            except Exception as exc:  # keep serving: fail the rows involved, never the thread
                rows = list(self._batch.rows) if self._batch else []
                self._batch = None
                self._pass_failed(exc, phase, rows + [j for j in newcomers if j not in rows and not j.done])
        self._drain_on_stop()

    def _next_newcomers(self) -> list[Job] | None:
        """Waiting jobs that fit in the batch now (blocking while there is nothing to do); None to stop."""
        with self._wake:
            while not self._stopping and not self._pending and not self._batch:
                self._wake.wait()
            if self._stopping:
                return None
            now = time.monotonic()
            for job in list(self._pending):
                if job.handle.cancelled or now > job.deadline:
                    self._pending.remove(job)
                    self._in_flight += 1
                    self._finish_unstarted(job, now)
            batch = self._batch
            if batch and (not batch.mergeable or any(job.solo for job in batch.rows)):
                return []
            room = self._settings.max_batch - (len(batch) if batch else 0)
            taken: list[Job] = []
            self.vram_blocked = False
            while self._pending and len(taken) < room:
                job = self._pending[0]
                if job.solo and (batch or taken):
                    break
                if not self._vram_admits(job, batch, taken):
                    self.vram_blocked = True
                    break
                taken.append(self._pending.popleft())
                if job.solo:
                    break
            self._in_flight += len(taken)
            return taken

    def _vram_admits(self, job: Job, batch: RunningBatch[Job] | None, taken: list[Job]) -> bool:
        """Whether the batch's KV cache, grown to its worst case with ``job`` in it, stays under the limit.

        Worst case of a left-padded batch: every row as wide as the widest, each growing by the most
        tokens any row may still generate. The cache already held is in ``allocated``; only the growth is
        added. A request that would run alone is always admitted.
        """
        if not batch and not taken:
            return True
        reading = self._memory()
        if reading is None:
            return True
        allocated, total = reading
        running = batch.rows if batch else []
        width = batch.mask.shape[1] if batch else 0
        newcomers = [*taken, job]
        rows = len(running) + len(newcomers)
        widest = max([width] + [len(j.prompt) for j in newcomers])
        remaining = max([j.params.max_tokens - j.generated for j in running]
                        + [j.params.max_tokens for j in newcomers])
        growth_tokens = rows * (widest + remaining) - len(running) * width
        return allocated + growth_tokens * self._kv_per_token <= self._settings.vram_limit * total

    def _finish_unstarted(self, job: Job, now: float) -> None:
        if job.handle.cancelled:
            self._finish(job, "cancelled")
        else:
            self._finish(job, "error", RequestTimeout("the request timed out while waiting in the queue"))

    def _admit(self, jobs: list[Job]) -> None:
        loaded = self._loaded
        started = time.monotonic()
        for job in jobs:
            try:
                job.start(loaded.tokenizer, loaded.device, started)
            except Exception as exc:  # its own parameters: it fails before its prompt joins anyone's pass
                self._finish(job, "error", own_failure(exc, job))
        jobs = [j for j in jobs if not j.done]
        if not jobs:
            return
        try:
            self._faults.hit("prefill")
            fresh, out = prefill(loaded.model, jobs, [j.prompt for j in jobs], self._pad, loaded.device)
            self._note_vram(jobs)
            self._accept_tokens(fresh, out.logits)
        except Exception as exc:
            raise _PrefillFailed(exc) from exc
        if self._batch is None:
            self._batch = fresh
        else:
            self._batch.absorb(fresh)
        self._drop_finished()

    def _decode_step(self) -> None:
        batch = self._batch
        assert batch is not None
        now = time.monotonic()
        for job in batch.rows:
            if job.handle.cancelled:
                self._finish(job, "cancelled")
            elif now > job.deadline:
                self._finish(job, "error", RequestTimeout(
                    f"the request exceeded its {self._settings.request_timeout_s:g} s timeout"))
        self._drop_finished()
        if not self._batch:
            return
        self._faults.hit("decode")
        out = self._batch.step(self._loaded.model, [job.next_token for job in self._batch.rows])
        self._note_vram(self._batch.rows)
        self._accept_tokens(self._batch, out.logits)
        self._drop_finished()

    def _note_vram(self, jobs: list[Job]) -> None:
        """Charge the allocator's peak of the pass just run to every request that was in it.

        Requests in one batch share its forward passes, so each one's peak is the highest
        peak of any pass it took part in: what the GPU needed while that request was served.
        """
        device = self._loaded.device
        if device.type != "cuda":
            return
        peak = int(torch.cuda.max_memory_allocated(device))
        torch.cuda.reset_peak_memory_stats(device)
        for job in jobs:
            job.vram_peak = peak if job.vram_peak is None else max(job.vram_peak, peak)

    def _accept_tokens(self, batch: RunningBatch[Job], logits: torch.Tensor) -> None:
        """Take each row's next token; a row whose own step raises ends alone, the others go on."""
        jobs = batch.rows
        picks = pick_tokens(logits, batch.seen, [j.params for j in jobs], [j.generator for j in jobs])  # type: ignore[misc]
        now = time.monotonic()
        for job, pick in zip(jobs, picks, strict=True):
            if job.done:
                continue
            try:
                self._faults.hit_row(job.handle.request_id, job.generated)
                if isinstance(pick, Exception):
                    raise pick
                self._take_token(job, pick, now)
            except Exception as exc:
                self._finish(job, "error", own_failure(exc, job))

    def _take_token(self, job: Job, token: int, now: float) -> None:
        if job.timings.first_token is None:
            job.timings.first_token = now
        if token in self._eos:
            self._finish(job, "stop")
            return
        job.generated += 1
        self.counters.tokens_out += 1
        assert job.decoder is not None
        text, stopped = job.stopper.feed(job.decoder.push(token))
        if text:
            job.handle.emit(TokenText(text))
        if stopped:
            self._finish(job, "stop")
        elif job.generated >= job.params.max_tokens:
            self._finish(job, "length")
        else:
            job.next_token = token

    def _drop_finished(self) -> None:
        batch = self._batch
        if batch is None:
            return
        keep = [i for i, job in enumerate(batch.rows) if not job.done]
        if not keep:
            self._batch = None
        else:
            batch.keep(keep)

    def _finish(self, job: Job, reason: FinishReason, error: RequestError | None = None) -> None:
        if job.done:
            return
        job.done = True
        tail = job.stopper.flush()  # empty after a stop string; text that only looked like one otherwise
        if tail and reason in ("stop", "length"):
            job.handle.emit(TokenText(tail))
        job.timings.finished = time.monotonic()
        self._in_flight -= 1
        counters = self.counters
        counters.tokens_in += len(job.prompt) if job.timings.started is not None else 0
        if reason == "cancelled":
            counters.cancelled += 1
        elif reason == "error":
            counters.failed += 1
        else:
            counters.completed += 1
        finished = Finished(reason, len(job.prompt), job.generated, job.timings, error, job.vram_peak)
        job.handle.emit(finished)
        if self.on_finished is not None:
            try:
                self.on_finished(job.handle, finished)
            except Exception:  # a broken record must never fail the rest of the batch
                log.exception("finish callback failed for request %s", job.handle.request_id)

    def _pass_failed(self, exc: Exception, phase: Phase, jobs: list[Job]) -> None:
        """A forward pass raised: fail (or, after an OOM, maybe retry) the requests it held, and carry on."""
        if not isinstance(exc, torch.cuda.OutOfMemoryError):
            log.error("inference step failed", exc_info=exc)
            failure = EngineFailure(f"generation failed: {type(exc).__name__}: {exc}")
            for job in jobs:
                self._finish(job, "error", failure)
            return
        retry = [j for j in jobs if self._settings.oom_retry and not j.retried and j.generated == 0]
        report = self._oom_report(phase, jobs, retried=bool(retry))
        log.warning(report.message, extra={"request_ids": list(report.request_ids)})
        error = EngineOutOfMemory("the GPU ran out of memory for this request; retry with a shorter prompt or "
                                  "fewer max_tokens", retry_after=2)
        for job in jobs:
            if job not in retry:
                self._finish(job, "error", error)
        with self._wake:
            for job in reversed(retry):
                job.retried, job.solo, job.timings.started = True, True, None
                job.params = replace(job.params, max_tokens=max(1, job.params.max_tokens // 2))
                self._in_flight -= 1
                self._pending.appendleft(job)
        if self.on_oom is not None:
            try:
                self.on_oom(report)
            except Exception:
                log.exception("OOM callback failed")

    def _oom_report(self, phase: Phase, jobs: list[Job], *, retried: bool) -> OomReport:
        """Free what the allocator caches, then describe the failed pass and the memory left in use."""
        allocated = reserved = total = None
        if self._loaded.device.type == "cuda":
            torch.cuda.empty_cache()
            device = self._loaded.device
            allocated, reserved = int(torch.cuda.memory_allocated(device)), int(torch.cuda.memory_reserved(device))
            total = int(torch.cuda.get_device_properties(device).total_memory)
        return OomReport(phase, tuple(j.handle.request_id for j in jobs), sum(len(j.prompt) for j in jobs),
                         max((j.params.max_tokens for j in jobs), default=0), retried, allocated, reserved, total)

    def _drain_on_stop(self) -> None:
        for job in list(self._batch.rows if self._batch else []):
            self._finish(job, "cancelled")
        self._batch = None
        while self._pending:
            job = self._pending.popleft()
            self._in_flight += 1
            self._finish(job, "error", ShuttingDown("the daemon stopped before this request started"))


class _PrefillFailed(Exception):
    """The prefill of new requests raised; the running batch was not touched."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error
