"""The inference loop: one thread that batches the queued requests and decides what a failed pass does.

One thread runs every forward pass (CUDA state and the KV cache are not shared across
threads). Between two decode steps it drops finished, cancelled and timed-out rows and
prefills waiting requests into the free slots, so a new request starts within one step
instead of waiting for the whole batch to finish. Callers queue requests through ``intake``.

On CUDA a waiting request joins the batch only while every GPU of the model stays under ``vram_limit``
with it (``admission``); otherwise it waits for rows to finish. A request that would run alone is always
started: nothing else can make room for it. A CUDA out-of-memory in a forward pass fails the requests in
that pass with a 503 (or, with ``oom_retry``, puts those that produced nothing yet back to run once more
alone with half the ``max_tokens``), empties the allocator's cache once the failed pass's tensors are gone,
reports an ``OomReport`` through ``on_oom`` and carries on serving. Any other failed pass fails its rows
and serving goes on, unless the GPU no longer runs work: then every request fails and ``on_fatal`` tells
the owner to end the process (``failures``). A failure in one request's own steps (its generator, its
token pick, its decoding; see ``rows``) ends that request alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import cast

import torch

from trayllm.config import Settings
from trayllm.engine.admission import Growth, admits, model_shape
from trayllm.engine.batch import RunningBatch, prefill
from trayllm.engine.device_memory import DeviceMemory, device_memory
from trayllm.engine.failures import PrefillFailed, forget_traceback, is_out_of_memory
from trayllm.engine.faults import FaultPlan, Phase
from trayllm.engine.intake import Intake
from trayllm.engine.models import LoadedModel, eos_token_ids, kv_bytes_per_token
from trayllm.engine.rows import Job, own_failure
from trayllm.engine.sampling import pick_tokens
from trayllm.engine.types import Finished, FinishReason, OomReport, TokenText
from trayllm.errors import EngineFailure, EngineOutOfMemory, RequestError, RequestTimeout, ShuttingDown

log = logging.getLogger(__name__)

PassFailure = tuple[Exception, Phase, list[Job]]
"""A forward pass that raised: what it raised, in which phase, and the requests that were in it."""


class Scheduler(Intake):
    """Owns the inference thread for one loaded model, and (through ``Intake``) the queue it serves."""

    def __init__(
        self,
        loaded: LoadedModel,
        settings: Settings,
        *,
        faults: FaultPlan | None = None,
        memory: DeviceMemory | None = None,
    ) -> None:
        super().__init__(settings)
        self._loaded = loaded
        self._faults = faults or FaultPlan()
        self._memory = memory or device_memory(loaded.model, loaded.device)
        self._shape = model_shape(loaded.model, kv_bytes_per_token(loaded))
        self.on_oom: Callable[[OomReport], None] | None = None
        self.on_fatal: Callable[[str], None] | None = None  # the GPU is lost: the process must end
        self.fatal: str | None = None  # why, once it is
        self.vram_blocked = False  # the head of the queue is waiting for VRAM
        self._eos = eos_token_ids(loaded)
        pad = loaded.tokenizer.pad_token_id
        assert isinstance(pad, int), "load_model sets a pad token"
        self._pad = pad
        self._batch: RunningBatch[Job] | None = None
        self._thread = threading.Thread(target=self._run, name="trayllm-inference", daemon=True)

    def start(self) -> None:
        self._thread.start()

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
        while self.fatal is None:
            newcomers = self._next_newcomers()
            if newcomers is None:
                break
            failure = self._round(newcomers)
            if failure is not None:  # handled here, after the except block, so its frames can be let go
                self._pass_failed(*failure)
        self._drain_on_stop()

    def _round(self, newcomers: list[Job]) -> PassFailure | None:
        """Prefill the newcomers and take one decode step; what failed, if a pass raised."""
        phase: Phase = "prefill"
        try:
            if newcomers:
                self._admit(newcomers)
            phase = "decode"
            if self._batch:
                self._decode_step()
        except PrefillFailed as failed:  # the running batch is untouched: only the newcomers failed
            return failed.error, "prefill", [j for j in newcomers if not j.done]
        except Exception as exc:  # keep serving: fail the rows involved, never the thread
            rows = list(self._batch.rows) if self._batch else []
            self._batch = None
            return exc, phase, rows + [j for j in newcomers if j not in rows and not j.done]
        return None

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
        """Whether ``job`` may join ``taken`` in the batch without a GPU passing ``vram_limit`` (``admission``).
        A request that would run alone is always admitted."""
        if not batch and not taken:
            return True
        readings = self._memory.readings()
        if not readings:
            return True
        running = batch.rows if batch else []
        newcomers = [*taken, job]
        growth = Growth(
            running_rows=len(running),
            running_width=batch.mask.shape[1] if batch else 0,
            running_remaining=max((j.params.max_tokens - j.generated for j in running), default=0),
            newcomer_prompts=tuple(len(j.prompt) for j in newcomers),
            newcomer_max_tokens=max(j.params.max_tokens for j in newcomers),
        )
        return admits(readings, self._shape, growth, self._settings.vram_limit)

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
            self._memory.begin_pass()
            self._faults.hit("prefill")
            fresh, out = prefill(
                loaded.model,
                jobs,
                [j.prompt for j in jobs],
                self._pad,
                loaded.device,
                count_replies=any(j.params.penalises_output for j in jobs),
            )
            self._note_vram(jobs)
            self._accept_tokens(fresh, out.logits)
        except Exception as exc:
            raise PrefillFailed(exc) from exc
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
                self._finish(
                    job,
                    "error",
                    RequestTimeout(f"the request exceeded its {self._settings.request_timeout_s:g} s timeout"),
                )
        self._drop_finished()
        if not self._batch:
            return
        self._memory.begin_pass()
        self._faults.hit("decode")
        out = self._batch.step(self._loaded.model, [job.next_token for job in self._batch.rows])
        self._note_vram(self._batch.rows)
        self._accept_tokens(self._batch, out.logits)
        self._drop_finished()

    def _note_vram(self, jobs: list[Job]) -> None:
        """Charge the peak of the pass just run (or just failed) to every request that was in it.

        Requests in one batch share its forward passes, so each one's peak is the highest peak of any
        pass it took part in: what the GPU needed while that request was served.
        """
        peak = self._memory.pass_peak()
        if peak is None:
            return
        for job in jobs:
            job.vram_peak = peak.higher(job.vram_peak)

    def _accept_tokens(self, batch: RunningBatch[Job], logits: torch.Tensor) -> None:
        """Take each row's next token; a row whose own step raises ends alone, the others go on."""
        jobs = batch.rows
        generators = cast("list[torch.Generator]", [j.generator for j in jobs])  # each job got one as it started
        picks = pick_tokens(logits, batch.seen, [j.params for j in jobs], generators, batch.counts)
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
            if batch.counts is not None and not any(job.params.penalises_output for job in batch.rows):
                batch.stop_counting()

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
        counters.count_end(reason)
        peak = job.vram_peak
        finished = Finished(
            reason,
            len(job.prompt),
            job.generated,
            job.timings,
            error,
            peak.bytes if peak else None,
            peak.total if peak else None,
        )
        job.handle.finish(finished)

    def _pass_failed(self, exc: Exception, phase: Phase, jobs: list[Job]) -> None:
        """A forward pass raised: charge its peak to its requests, then fail them (after an OOM, maybe retry
        them) and carry on; or, when the GPU no longer works, fail everything and stop."""
        self._note_vram(jobs)
        if is_out_of_memory(exc):
            forget_traceback(exc)  # before release: the traceback's frames hold the failed pass's tensors
            self._out_of_memory(phase, jobs)
            return
        log.error("inference step failed", exc_info=exc)
        failure = EngineFailure(f"generation failed: {type(exc).__name__}: {exc}")
        forget_traceback(exc)
        if self._faults.device_lost or not self._memory.healthy():
            self._lose_device(f"the GPU stopped working ({type(exc).__name__}: {exc})".splitlines()[0])
            failure = EngineFailure(f"{self.fatal}; the daemon is restarting", retry_after=10)
        for job in jobs:
            self._finish(job, "error", failure)

    def _out_of_memory(self, phase: Phase, jobs: list[Job]) -> None:
        retry = [j for j in jobs if self._settings.oom_retry and not j.retried and j.generated == 0]
        report = self._oom_report(phase, jobs, retried=bool(retry))
        log.warning(report.message, extra={"request_ids": list(report.request_ids)})
        error = EngineOutOfMemory(
            "the GPU ran out of memory for this request; retry with a shorter prompt or fewer max_tokens", retry_after=2
        )
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
        after = self._memory.release()
        return OomReport(
            phase,
            tuple(j.handle.request_id for j in jobs),
            sum(len(j.prompt) for j in jobs),
            max((j.params.max_tokens for j in jobs), default=0),
            retried,
            after.allocated if after else None,
            after.reserved if after else None,
            after.total if after else None,
            after.index if after else None,
        )

    def _lose_device(self, reason: str) -> None:
        """The GPU is broken for this process: refuse new work, end the loop, and tell the owner."""
        log.critical(reason)
        with self._wake:
            self._accepting = False
            self.fatal = reason
        if self.on_fatal is not None:
            try:
                self.on_fatal(reason)
            except Exception:
                log.exception("fatal-error callback failed")

    def _drain_on_stop(self) -> None:
        lost = EngineFailure(f"{self.fatal}; the daemon is restarting", retry_after=10) if self.fatal else None
        for job in list(self._batch.rows if self._batch else []):
            if lost is None:
                self._finish(job, "cancelled")
            else:
                self._finish(job, "error", lost)
        self._batch = None
        while self._pending:
            job = self._pending.popleft()
            self._in_flight += 1
            self._finish(job, "error", lost or ShuttingDown("the daemon stopped before this request started"))
