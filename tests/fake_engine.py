"""A fake engine for the daemon's tests: no model, no torch, replies in microseconds.

``FakeEngine`` satisfies trayllm.engine.interface.ServingEngine, so the daemon's real app (routes, edge,
records, events) runs in front of it unchanged. Prompts go through the real windowing
(trayllm.engine.conversation) over ``WordTokenizer``: one token per word of a message, one for each
message's role, one for the reply's start. The reply is ``script`` (by default the last message, echoed),
one word per token, produced on the fake's own thread through the same RequestHandle and Finished events as
the real engine. Like the real one it honours ``max_tokens`` (``length``), the end of the reply (``stop``),
stop strings (the real StopMatcher), cancellation, the per-user rate limit (the real TokenBucket), ``max_batch``
(the rest wait in the queue) and the counters; a test sets ``token_delay_s`` for slow replies, ``fail`` to end
every request with that error after ``fail_after_tokens`` tokens, and ``refuse`` to refuse new ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trayllm.api_status import EngineState
from trayllm.config import Settings
from trayllm.engine.conversation import Message, Prompt, build_prompt, build_text_prompt
from trayllm.engine.handle import Counters, FinishCallback, RequestHandle
from trayllm.engine.interface import FaultSwitch
from trayllm.engine.ratelimit import TokenBucket
from trayllm.engine.textstream import StopMatcher
from trayllm.engine.types import (
    Finished,
    FinishReason,
    ModelInfo,
    OomReport,
    RequestTimings,
    SamplingParams,
    TokenText,
)
from trayllm.errors import Conflict, NotReady, Paused, RateLimited, RequestError, ShuttingDown

FAKE_INFO = ModelInfo(
    name="smollm2-135m-instruct",
    version="fake",
    source="fake",
    device="cpu",
    dtype="fp32",
    quantization="none",
    context_length=8192,
)
"""The embedded model's name and context, so a test moved here from a real daemon keeps its literals."""

REPLY_START = "<assistant>"


class WordTokenizer:
    """Just enough of a Hugging Face tokenizer for ``build_prompt`` and ``build_text_prompt``: a chat or a text as
    ids, and ids as words."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._words: list[str] = []
        self._lock = threading.Lock()

    def apply_chat_template(
        self, messages: list[Message], add_generation_prompt: bool = True, tokenize: bool = True
    ) -> list[int]:
        words = [word for m in messages for word in (f"<{m['role']}>", *m["content"].split())]
        return [self._id(word) for word in (*words, REPLY_START)]

    def __call__(self, text: str) -> dict[str, list[int]]:
        """A raw prompt's ids (``build_text_prompt``): its words, then the reply's start, so it echoes them."""
        return {"input_ids": [self._id(word) for word in (*text.split(), REPLY_START)]}

    def _id(self, word: str) -> int:
        with self._lock:
            if word not in self._ids:
                self._ids[word] = len(self._words)
                self._words.append(word)
            return self._ids[word]

    def last_message(self, ids: list[int]) -> str:
        """The words of the last message in a prompt this tokenizer made."""
        words = [self._words[i] for i in ids[:-1]]  # without the reply's start
        roles = [i for i, word in enumerate(words) if word.startswith("<") and word.endswith(">")]
        return " ".join(words[roles[-1] + 1 :] if roles else words)


@dataclass
class _Job:
    handle: RequestHandle
    prompt_tokens: int
    pieces: list[str]  # the reply, one token each
    params: SamplingParams
    timings: RequestTimings
    stopper: StopMatcher
    generated: int = 0
    done: bool = False


class FaultsHeld:
    """/v1/faults' plan, kept and shown; the fake injects nothing."""

    def __init__(self) -> None:
        self.plan: Any = None

    def set(self, faults: Any) -> None:
        self.plan = faults

    @property
    def current(self) -> dict[str, Any]:
        return {} if self.plan is None else self.plan.to_dict()


@dataclass
class FakeEngine:
    """A ServingEngine without a model; the fields before ``state`` are the test's script, set at any time."""

    settings: Settings
    info: ModelInfo | None = FAKE_INFO
    script: str | None = None  # the reply; None echoes the last message
    token_delay_s: float = 0.0
    fail: RequestError | None = None
    fail_after_tokens: int = 0
    refuse: RequestError | None = None  # raised by admit, as a full queue would
    reload_s: float = 0.05
    vram: tuple[int, int] | None = None  # what memory() reports
    state: EngineState = "loading"
    paused: str | None = None
    progress: str | None = None
    error: str | None = None
    on_oom: Callable[[OomReport], None] | None = None
    on_event: Callable[[str, dict[str, Any]], object] | None = None
    on_fatal: Callable[[str], None] | None = None
    started_at: float = field(default_factory=time.monotonic)
    counters: Counters = field(default_factory=Counters)
    faults: FaultSwitch = field(default_factory=FaultsHeld)
    tokenizer: WordTokenizer = field(default_factory=WordTokenizer)
    vram_blocked: bool = False
    backlogged: bool = False

    def __post_init__(self) -> None:
        self._bucket = TokenBucket(self.settings.rate_limit_per_minute, self.settings.rate_limit_burst)
        self._pending: deque[_Job] = deque()
        self._running: list[_Job] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="fake-engine", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        self.state = "ready"
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def pause(self, reason: str | None = None) -> None:
        self.paused = reason or "paused by the user"
        self._emit("serving.paused", reason=self.paused)

    def resume(self) -> None:
        was, self.paused = self.paused, None
        if was is not None:
            self._emit("serving.resumed")

    def reload(self, model: str | None = None) -> None:
        if self.state == "draining":
            raise ShuttingDown("the daemon is shutting down", retry_after=5)
        if self.state != "ready":
            raise Conflict(f"the model is already {self.state}; wait for it to finish")
        self.state = "reloading"
        self._emit("model.reloading", model=self.info.name if self.info else None)
        threading.Timer(self.reload_s, self._reloaded, args=(model,)).start()

    def _reloaded(self, model: str | None = None) -> None:
        """A switch (``model``) serves that path, as the real engine's ModelInfo names it, at a version of its own."""
        if model is not None and self.info is not None:
            self.info = dataclasses.replace(self.info, source=model, version=f"fake-{len(model)}")
        self.state = "ready"
        self._emit("model.loaded", model=self.info.name if self.info else None, reloaded=True)

    def begin_drain(self) -> None:
        self.state = "draining"
        self._emit("daemon.shutting_down")

    def _emit(self, kind: str, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, data)

    # -- state ----------------------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def memory(self) -> tuple[int, int] | None:
        return self.vram

    # -- requests -------------------------------------------------------------------------------------

    def require_loaded(self) -> ModelInfo:
        if self.state == "draining":
            raise ShuttingDown("the daemon is shutting down", retry_after=5)
        if self.info is None or self.state != "ready":
            raise NotReady(f"the model is not ready ({self.error or self.progress or self.state})", retry_after=2)
        return self.info

    def require_ready(self) -> ModelInfo:
        info = self.require_loaded()
        if self.paused is not None:
            raise Paused(f"serving is paused ({self.paused})")
        return info

    def admit(self, user: str) -> None:
        self.require_ready()
        wait = self._bucket.take(user)
        if self.refuse is not None or wait > 0:
            self.counters.rejected += 1
            raise self.refuse or RateLimited(
                f"rate limit for user {user!r} reached; retry in {wait:.1f} s", retry_after=wait
            )

    def build_prompt(self, messages: Sequence[Message], max_tokens: int | None) -> Prompt:
        info = self.require_loaded()
        return build_prompt(
            self.tokenizer,
            messages,
            context_length=info.context_length,  # type: ignore[arg-type]
            history_turns=self.settings.history_turns,
            max_tokens=max_tokens,
            default_max_tokens=self.settings.default_max_tokens,
        )

    def build_text_prompt(self, text: str, max_tokens: int | None) -> Prompt:
        info = self.require_loaded()
        return build_text_prompt(
            self.tokenizer,
            text,
            context_length=info.context_length,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            default_max_tokens=self.settings.default_max_tokens,
        )

    def submit(
        self,
        request_id: str,
        user: str,
        prompt: Prompt,
        params: SamplingParams,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        on_finished: FinishCallback | None = None,
        keep_text: bool = False,
        arrived: float | None = None,
        admitted: bool = False,
    ) -> RequestHandle:
        if not admitted:
            self.admit(user)
        self.require_ready()
        handle = RequestHandle(request_id, loop, on_finished=on_finished, keep_text=keep_text)
        reply = self.tokenizer.last_message(prompt.ids) if self.script is None else self.script
        timings = RequestTimings() if arrived is None else RequestTimings(arrived=arrived)
        job = _Job(handle, len(prompt.ids), re.findall(r"\s*\S+", reply), params, timings, StopMatcher(params.stop))
        with self._wake:
            self._pending.append(job)
            self._wake.notify()
        return handle

    # -- the fake's inference thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not (self._stopping or self._pending or self._running):
                    self._wake.wait()
                if self._stopping:
                    break
                while self._pending and len(self._running) < self.settings.max_batch:
                    job = self._pending.popleft()
                    job.timings.started = time.monotonic()
                    self._running.append(job)
            for job in self._running:
                self._step(job)
            self._running = [job for job in self._running if not job.done]
            time.sleep(self.token_delay_s)
        for job in [*self._running, *self._pending]:
            self._finish(job, "cancelled")

    def _step(self, job: _Job) -> None:
        """One token of ``job``, as the real engine takes one: cancelled, failed, ended, or one more word."""
        if job.handle.cancelled:
            self._finish(job, "cancelled")
        elif self.fail is not None and job.generated >= self.fail_after_tokens:
            self._finish(job, "error", self.fail)
        elif job.generated >= len(job.pieces):
            self._finish(job, "stop")  # the model's end of text
        else:
            job.timings.first_token = job.timings.first_token or time.monotonic()
            job.generated += 1
            self.counters.tokens_out += 1
            text, stopped = job.stopper.feed(job.pieces[job.generated - 1])
            if text:
                job.handle.emit(TokenText(text))
            if stopped:
                self._finish(job, "stop")
            elif job.generated >= job.params.max_tokens:
                self._finish(job, "length")

    def _finish(self, job: _Job, reason: FinishReason, error: RequestError | None = None) -> None:
        job.done = True
        tail = job.stopper.flush()
        if tail and reason in ("stop", "length"):
            job.handle.emit(TokenText(tail))
        job.timings.finished = time.monotonic()
        counters = self.counters
        counters.tokens_in += job.prompt_tokens if job.timings.started is not None else 0
        counters.count_end(reason)
        finished = Finished(reason, job.prompt_tokens, job.generated, job.timings, error)
        job.handle.finish(finished)
