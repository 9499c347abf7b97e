"""The remote engine: the daemon's ServingEngine over an OpenAI-compatible server (vLLM, TGI, SGLang, the
llama.cpp server, Ollama, or another trayllm), so records, SLOs, alerts, the tray and the chat window work the
same around a model served elsewhere.

Everything here runs on one asyncio loop of its own thread (``trayllm-remote``) with one httpx client: each
request streams ``/chat/completions``, or ``/completions`` for a raw prompt (``stream_options.include_usage`` for
the token counts), and its text arrives on the caller's handle as the local engine's would. Queue time and
first-token time are measured here, from arrival; a request waits for one of ``max_batch`` upstream slots, and
``queue_size`` bound the waiting. Cancelling a handle closes its upstream stream, which is how an OpenAI server
learns the client left. A probe (trayllm/engine/remote_probe.py) asks the upstream for its models every
``probe_interval_s`` (so the daemon knows it is down before a request fails) and reads its Prometheus ``/metrics``
for the KV-cache usage a record reports as its VRAM share. No torch, no transformers: a daemon serving only a
remote engine starts in well under a second.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from trayllm.api_status import EngineState
from trayllm.config import Settings
from trayllm.engine.conversation import Message, Prompt, split_turns
from trayllm.engine.handle import Counters, FinishCallback, RequestHandle
from trayllm.engine.ratelimit import TokenBucket
from trayllm.engine.remote_probe import UpstreamProbe
from trayllm.engine.remote_wire import (
    UPSTREAM_RETRY_AFTER_S,
    StreamState,
    read_stream_line,
    request_body,
    request_path,
    upstream_error,
)
from trayllm.engine.types import Finished, FinishReason, ModelInfo, OomReport, RequestTimings, SamplingParams, TokenText
from trayllm.engine.upstream import Upstream
from trayllm.errors import (
    Conflict,
    EngineUnreachable,
    InvalidRequest,
    NotReady,
    Paused,
    QueueFull,
    RateLimited,
    RequestError,
    RequestTimeout,
    ShuttingDown,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
CANCEL_POLL_S = 0.02  # how often a running request looks at its handle's cancel flag and deadline


class FaultsRefused:
    """/v1/faults on a remote engine: there is no inference loop here to inject faults into."""

    def set(self, faults: Any) -> None:
        raise InvalidRequest("fault injection needs the local engine; this daemon serves a remote one")

    @property
    def current(self) -> dict[str, Any]:
        return {}


@dataclass(eq=False)  # each is its own request: kept in a set while it runs
class _Request:
    handle: RequestHandle
    prompt: Prompt
    params: SamplingParams
    timings: RequestTimings
    deadline: float
    kv_peak: float | None = None
    state: StreamState = field(default_factory=StreamState)


class RemoteEngine:
    """A ServingEngine whose model runs behind ``upstream``'s URL."""

    probe_interval_s = 5.0

    def __init__(self, settings: Settings, upstream: Upstream | None = None) -> None:
        self.settings = settings
        self.upstream = upstream or Upstream.from_settings(settings)
        self.base_url = self.upstream.url.rstrip("/")
        self.state: EngineState = "loading"
        self.progress: str | None = f"asking {self.base_url} for its models"
        self.error: str | None = None
        self.paused: str | None = None
        self.started_at = time.monotonic()
        self.on_oom: Callable[[OomReport], None] | None = None  # never called: the upstream owns the GPU
        self.on_event: Callable[[str, dict[str, Any]], object] | None = None
        self.on_fatal: Callable[[str], None] | None = None
        self.probe = UpstreamProbe(self.upstream, self.base_url, self._emit)
        self.faults = FaultsRefused()
        self.vram_blocked = False
        self.info: ModelInfo | None = None
        self._counters = Counters()
        self._bucket = TokenBucket(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self._waiting = 0
        self._running: set[_Request] = set()
        self._accepting = True
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()  # run by the thread start() starts, closed when it ends
        self._thread = threading.Thread(target=self._run_loop, name="trayllm-remote", daemon=True)
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        if self.upstream.model:
            self._set_model(self.upstream.model, 0)

    # -- lifecycle ------------------------------------------------------------------------------------

    def _run_loop(self) -> None:
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(timeout=10)
        self._spawn(self._probe_forever())

    async def _open(self) -> None:
        headers = {"Authorization": f"Bearer {self.upstream.api_key}"} if self.upstream.api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(self.settings.request_timeout_s, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=self.settings.max_batch),
        )
        self._slots = asyncio.Semaphore(self.settings.max_batch)

    def stop(self) -> None:
        if not self._thread.is_alive():
            self._loop.close()  # never started
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=self.settings.shutdown_grace_s + 10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def pause(self, reason: str | None = None) -> None:
        self.paused = reason or "paused by the user"
        self._emit("serving.paused", reason=self.paused)

    def resume(self) -> None:
        was, self.paused = self.paused, None
        if was is not None:
            self._emit("serving.resumed")

    def reload(self, model: str | None = None) -> None:
        """Ask the upstream for its models again (a server that now serves another model); Conflict while the
        first answer is still awaited, ShuttingDown when draining. Which model it serves is the upstream's choice
        (``engine_model``), so a switch (``model``) is refused."""
        if model is not None:
            raise InvalidRequest(
                "this daemon serves through engine_url, which decides the model: set engine_model to choose it",
                param="model",
            )
        if self.state == "draining":
            raise ShuttingDown("the daemon is shutting down", retry_after=5)
        if self.state != "ready":
            raise Conflict(f"the engine is {self.state}; wait for it to finish")
        self._emit("model.reloading", model=self.info.name if self.info else None)
        self._spawn(self._reprobe())

    async def _reprobe(self) -> None:
        await self._probe()
        self._emit("model.loaded", model=self.info.name if self.info else None, reloaded=True)

    def begin_drain(self) -> None:
        self._accepting = False
        self.state = "draining"
        self._emit("daemon.shutting_down")

    def _emit(self, kind: str, **data: Any) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, data)
            except Exception:
                log.exception("event callback failed for %s", kind)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on the engine's loop (from any thread), held until it ends so that ``stop`` can end it."""

        def begin() -> None:
            task = self._loop.create_task(work)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._loop.call_soon_threadsafe(begin)

    # -- the probe: models, reachability, KV-cache usage ---------------------------------------------------

    @property
    def on_reachability(self) -> Callable[[str, str, bool, str], None] | None:
        """Called (name, url, reachable, why) when the upstream stops or starts answering: the daemon's alert."""
        return self.probe.on_reachability

    @on_reachability.setter
    def on_reachability(self, callback: Callable[[str, str, bool, str], None] | None) -> None:
        self.probe.on_reachability = callback

    @property
    def reachable(self) -> bool | None:
        return self.probe.reachable

    async def _probe_forever(self) -> None:
        while True:
            await self._probe()
            await asyncio.sleep(self.probe_interval_s)

    async def _probe(self) -> None:
        assert self._client is not None
        found = await self.probe.model(self._client)
        if isinstance(found, str):
            if self.info is None:
                self.progress = found
            return
        self._set_model(found.id, found.context_length)
        await self._sample_kv_cache()

    def _set_model(self, model_id: str, context_length: int) -> None:
        self.info = ModelInfo(
            name=self.settings.model_name or model_id,
            version=model_id,
            source=self.base_url,
            device="remote",
            dtype="upstream",
            quantization="upstream",
            context_length=context_length or (self.info.context_length if self.info else 0),
            engine=self.upstream.name,
            engine_url=self.base_url,
        )
        if self.state == "loading":
            self.state, self.progress = "ready", None
            log.info("remote engine ready", extra={"url": self.base_url, "model": model_id})
            self._emit("model.loaded", model=self.info.name, version=model_id, reloaded=False, seconds=0)

    async def _sample_kv_cache(self) -> None:
        """Raise the KV-cache peak of every request running to the upstream's usage now, where it reports one."""
        assert self._client is not None
        usage = await self.probe.kv_cache_usage(self._client)
        if usage is not None:
            for request in list(self._running):
                request.kv_peak = usage if request.kv_peak is None else max(request.kv_peak, usage)

    # -- requests -------------------------------------------------------------------------------------

    def require_loaded(self) -> ModelInfo:
        if self.state == "draining":
            raise ShuttingDown("the daemon is shutting down", retry_after=5)
        if self.info is None or self.state != "ready":
            raise NotReady(f"the remote engine is not ready ({self.progress or self.state})", retry_after=2)
        return self.info

    def require_ready(self) -> ModelInfo:
        info = self.require_loaded()
        if self.paused is not None:
            raise Paused(f"serving is paused ({self.paused}); resume it from the tray or with `trayllm resume`")
        return info

    def admit(self, user: str) -> None:
        """NotReady / ShuttingDown / Paused / QueueFull / RateLimited now, taking ``user``'s allowance."""
        self.require_ready()
        with self._lock:
            if not self._accepting:
                raise ShuttingDown("the daemon is shutting down", retry_after=5)
            if self._waiting >= self.settings.queue_size:
                self._counters.rejected += 1
                raise QueueFull(f"the queue is full ({self.settings.queue_size} waiting); retry shortly", retry_after=1)
            wait = self._bucket.take(user)
            if wait > 0:
                self._counters.rejected += 1
                raise RateLimited(f"rate limit for user {user!r} reached; retry in {wait:.1f} s", retry_after=wait)

    def build_prompt(self, messages: Sequence[Message], max_tokens: int | None) -> Prompt:
        """The last ``history_turns`` turns (and the system messages) as they are: the upstream tokenizes them,
        and refuses with a 400 what does not fit its context, which the client then gets as such."""
        self.require_loaded()
        system, turns = split_turns(messages)
        kept = turns[-self.settings.history_turns :]
        window = tuple(system + [m for turn in kept for m in turn])
        reply = max_tokens if max_tokens is not None else self.settings.default_max_tokens
        return Prompt([], reply, turns_kept=len(kept), turns_dropped=len(turns) - len(kept), messages=window)

    def build_text_prompt(self, text: str, max_tokens: int | None) -> Prompt:
        """The raw prompt as it is, for the upstream's /completions, which tokenizes it and refuses with a 400
        what does not fit its context."""
        self.require_loaded()
        if not text:
            raise InvalidRequest("the prompt is empty", param="prompt")
        reply = max_tokens if max_tokens is not None else self.settings.default_max_tokens
        return Prompt([], reply, turns_kept=1, turns_dropped=0, text=text)

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
        """Start forwarding a request; raises NotReady, ShuttingDown, RateLimited or QueueFull at once."""
        if not admitted:
            self.admit(user)
        self.require_ready()
        handle = RequestHandle(request_id, loop, on_finished=on_finished, keep_text=keep_text)
        timings = RequestTimings() if arrived is None else RequestTimings(arrived=arrived)
        request = _Request(handle, prompt, params, timings, timings.arrived + self.settings.request_timeout_s)
        with self._lock:
            self._waiting += 1
        self._spawn(self._serve(request))
        return handle

    async def _serve(self, request: _Request) -> None:
        """Run the request's stream, cancelling it when the handle is cancelled or its deadline passes."""
        work = asyncio.ensure_future(self._forward(request))
        error: RequestError | None = None
        reason: FinishReason = "stop"
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=CANCEL_POLL_S)
                if work.done():
                    break
                if request.handle.cancelled:
                    work.cancel()
                    reason = "cancelled"
                elif time.monotonic() >= request.deadline:
                    work.cancel()
                    reason, error = "error", RequestTimeout("the request took longer than request_timeout_s")
            if not work.cancelled():
                reason = work.result()
        except RequestError as exc:
            reason, error = "error", exc
        except asyncio.CancelledError:  # the engine is stopping
            work.cancel()
            reason = "cancelled"
        except Exception as exc:  # a bug here must end this request, not the loop
            log.exception("forwarding request %s failed", request.handle.request_id)
            reason, error = "error", EngineUnreachable(f"forwarding failed: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                if request.timings.started is None:
                    self._waiting -= 1
            self._running.discard(request)
        self._finish(request, reason, error)

    async def _forward(self, request: _Request) -> FinishReason:
        assert self._client is not None and self._slots is not None and self.info is not None
        async with self._slots:
            with self._lock:
                self._waiting -= 1
                request.timings.started = time.monotonic()
            self._running.add(request)
            body = request_body(self.info.version, request.prompt, request.params)
            url = self.base_url + request_path(request.prompt)
            try:
                async with self._client.stream("POST", url, json=body) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise upstream_error(
                            response.status_code, response.content, response.headers.get("retry-after")
                        )
                    self.probe.set_reachable(True, f"{self.base_url} answers again")
                    async for line in response.aiter_lines():
                        text = read_stream_line(line, request.state)
                        if text:
                            request.timings.first_token = request.timings.first_token or time.monotonic()
                            request.handle.emit(TokenText(text))
                        if request.state.done:
                            break
            except httpx.TransportError as exc:
                failure = EngineUnreachable(
                    f"the upstream engine {self.base_url} cannot be reached: {type(exc).__name__}: {exc}",
                    retry_after=UPSTREAM_RETRY_AFTER_S,
                )
                self.probe.set_reachable(False, failure.message)
                raise failure from None
            except EngineUnreachable as exc:
                self.probe.set_reachable(False, exc.message)
                raise
            await self._sample_kv_cache()
        return request.state.finish_reason or "stop"

    def _finish(self, request: _Request, reason: FinishReason, error: RequestError | None) -> None:
        request.timings.finished = time.monotonic()
        state = request.state
        completion = state.completion_tokens if state.completion_tokens is not None else state.chunks
        prompt_tokens = state.prompt_tokens or 0
        counters = self._counters
        counters.tokens_in += prompt_tokens
        counters.tokens_out += completion
        counters.count_end(reason)
        finished = Finished(
            reason, prompt_tokens, completion, request.timings, error, vram_peak_fraction=request.kv_peak
        )
        request.handle.finish(finished)

    # -- state ----------------------------------------------------------------------------------------

    @property
    def counters(self) -> Counters:
        return self._counters

    @property
    def queue_depth(self) -> int:
        return self._waiting

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def backlogged(self) -> bool:
        return self._waiting >= self.settings.backlog_threshold

    def memory(self) -> tuple[int, int] | None:
        """None: the upstream reports a KV-cache share, not bytes (records carry it as their VRAM share)."""
        return None
