"""The engine facade the daemon talks to: load in the background, then prompt building and submission.

Loading runs on its own thread so the daemon answers /healthz and /v1/status (with load
progress) while weights are converted or loaded; /readyz turns true only after warm-up. The same
thread reloads the model on request (in-flight requests finish first, new ones get 503 meanwhile).
Pausing makes new requests fail with 503 ``paused`` while the model stays loaded. Every such change
is announced through ``on_event`` (for /v1/events), and an out-of-memory through ``on_oom``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from trayllm.api_status import EngineState
from trayllm.config import Settings
from trayllm.engine.conversation import Message, Prompt, build_prompt, build_text_prompt
from trayllm.engine.device_memory import configure_cuda_allocator
from trayllm.engine.faults import FaultPlan
from trayllm.engine.handle import Counters, FinishCallback, RequestHandle
from trayllm.engine.models import LoadedModel, load_model
from trayllm.engine.scheduler import Scheduler
from trayllm.engine.switch_check import check_switch
from trayllm.engine.types import ModelInfo, OomReport, SamplingParams
from trayllm.errors import Conflict, NotReady, Paused, ShuttingDown, TrayllmError

log = logging.getLogger(__name__)

WARMUP_MESSAGES: list[Message] = [{"role": "user", "content": "Say hello."}]
WARMUP_TOKENS = 4


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state: EngineState = "loading"
        self.progress: str | None = "starting"
        self.error: str | None = None
        self.started_at = time.monotonic()
        self.on_oom: Callable[[OomReport], None] | None = None  # called on the inference thread
        self.on_event: Callable[[str, dict[str, Any]], object] | None = None  # state changes, any thread
        self.on_fatal: Callable[[str], None] | None = None  # the GPU is lost: the owner must end the process
        self.faults = FaultPlan()  # only ever set when fault_injection is on
        self.paused: str | None = None  # the reason, while paused
        self._counters = Counters()  # one set for the daemon's life, across reloads
        self._loaded: LoadedModel | None = None
        self._scheduler: Scheduler | None = None
        self._loader = threading.Thread(target=self._load, name="trayllm-loader", daemon=True)
        self._ready = threading.Event()
        self._lifecycle = threading.Lock()  # one load or reload at a time

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self._loader.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def _emit(self, kind: str, **data: Any) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, data)
            except Exception:  # an event nobody could publish must not stop a load
                log.exception("event callback failed for %s", kind)

    def _load(self, reloaded: bool = False) -> None:
        try:
            began = time.monotonic()
            configure_cuda_allocator()
            loaded = load_model(self.settings, progress=self._set_progress)
            self._loaded = loaded
            self._scheduler = Scheduler(loaded, self.settings, faults=self.faults)
            self._scheduler.on_oom = self.on_oom
            self._scheduler.on_fatal = self._device_lost
            self._scheduler.start()
            log.info(
                "model loaded",
                extra={
                    "model": loaded.info.name,
                    "version": loaded.info.version,
                    "seconds": round(time.monotonic() - began, 2),
                },
            )
            if self.settings.warmup:
                self.state = "warming"
                self._set_progress("warming up")
                self._warm_up()
            self._scheduler.counters = self._counters  # warm-up is not a request anyone made
            self.state, self.progress, self.error = "ready", None, None
            self._ready.set()
            log.info("ready", extra={"seconds": round(time.monotonic() - self.started_at, 2)})
            self._emit(
                "model.loaded",
                model=loaded.info.name,
                version=loaded.info.version,
                reloaded=reloaded,
                seconds=round(time.monotonic() - began, 2),
            )
        except TrayllmError as exc:
            self._fail(exc.message)
        except Exception as exc:  # a broken model file must not kill the daemon silently
            log.exception("model load failed")
            self._fail(f"{type(exc).__name__}: {exc}")

    def _fail(self, message: str) -> None:
        self.state, self.error, self.progress = "failed", message, None
        log.error("model load failed: %s", message)
        self._emit("model.failed", error=message)

    def _device_lost(self, reason: str) -> None:
        """Called on the inference thread when the GPU no longer runs work: no request can succeed again."""
        self._ready.clear()
        self._fail(reason)
        if self.on_fatal is not None:
            self.on_fatal(reason)

    def reload(self, model: str | None = None) -> None:
        """Reload the model in the background without restarting the process (weights changed on disk), or, with
        ``model``, switch to that one (a value of the ``model`` setting: a path, a hub id, "" for the embedded).

        A switch is checked first (engine.switch_check: it resolves, its files read, it fits) and refused with
        ModelLoadError while the old model still serves. New requests get 503 at once; queued and in-flight ones
        finish first (up to ``shutdown_grace_s``, then they are cancelled). Raises Conflict while a load is under
        way, ShuttingDown when draining.
        """
        with self._lifecycle:
            if self.state in ("loading", "warming", "reloading"):
                raise Conflict(f"the model is already {self.state}; wait for it to finish")
            if self.state == "draining":
                raise ShuttingDown("the daemon is shutting down", retry_after=5)
            target = self.settings if model is None else dataclasses.replace(self.settings, model=model)
            if model is not None:
                check_switch(target)
            self.state, self.progress = "reloading", "reloading the model" if model is None else f"switching to {model}"
        self._ready.clear()
        self._emit("model.reloading", model=self.info.name if self.info else None, switching_to=model)
        threading.Thread(target=self._reload, args=(target,), name="trayllm-reloader", daemon=True).start()

    def _reload(self, target: Settings) -> None:
        """Stop the old scheduler, load ``target``; if a switch fails to load, load the previous settings back
        (the failure was announced as ``model.failed``, so a client waiting on the switch hears why)."""
        previous = self.settings
        old = self._scheduler
        if old is not None:
            old.stop_accepting()
            deadline = time.monotonic() + self.settings.shutdown_grace_s
            while not old.idle() and time.monotonic() < deadline:
                time.sleep(0.05)
            old.stop()
        self._scheduler = self._loaded = None
        del old
        gc.collect()
        _empty_cuda_cache()
        self.settings = target
        self._load(reloaded=True)
        if self.state == "failed" and target is not previous:
            log.warning("switch to %s failed; loading %s back", target.model, previous.model or "the embedded model")
            self.settings = previous
            self.state, self.progress = "reloading", "loading the previous model back"
            gc.collect()
            _empty_cuda_cache()
            self._load(reloaded=True)

    def pause(self, reason: str | None = None) -> None:
        """New requests get 503 ``paused`` until ``resume``; in-flight ones carry on."""
        self.paused = reason or "paused by the user"
        self._emit("serving.paused", reason=self.paused)

    def resume(self) -> None:
        was, self.paused = self.paused, None
        if was is not None:
            self._emit("serving.resumed")

    def _set_progress(self, text: str) -> None:
        self.progress = text
        log.info(text)

    def _warm_up(self) -> None:
        """One short real generation, so the first user request pays no first-call costs."""
        assert self._loaded is not None and self._scheduler is not None
        prompt = self.build_prompt(WARMUP_MESSAGES, WARMUP_TOKENS)
        handle = RequestHandle("warmup")
        params = SamplingParams(max_tokens=WARMUP_TOKENS, temperature=0.0, top_p=1.0, repetition_penalty=1.0)
        self._scheduler.submit(handle, "trayllm-warmup", prompt.ids, params)
        for _ in handle.iter_events(timeout=120):
            pass

    def begin_drain(self) -> None:
        """Refuse new requests; in-flight ones carry on."""
        if self._scheduler is not None:
            self._scheduler.stop_accepting()
        self.state = "draining"
        self._emit("daemon.shutting_down")

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.stop()

    # -- requests --------------------------------------------------------------------

    @property
    def info(self) -> ModelInfo | None:
        return self._loaded.info if self._loaded is not None else None

    def require_ready(self) -> ModelInfo:
        """The loaded model's info, or NotReady / ShuttingDown / Paused when requests cannot be served."""
        info = self.require_loaded()
        if self.paused is not None:
            raise Paused(f"serving is paused ({self.paused}); resume it from the tray or with `trayllm resume`")
        return info

    def require_loaded(self) -> ModelInfo:
        """The loaded model's info, or NotReady / ShuttingDown; a paused daemon still has its model."""
        loaded = self._loaded
        if self.state == "draining":
            raise ShuttingDown("the daemon is shutting down", retry_after=5)
        if loaded is None or self.state != "ready":
            detail = self.error if self.state == "failed" else self.progress or self.state
            raise NotReady(f"the model is not ready ({detail})", retry_after=2)
        return loaded.info

    def _tokenizer_holder(self) -> LoadedModel:
        """The loaded model, whose tokenizer builds prompts (a paused engine's too); NotReady before a load."""
        loaded = self._loaded
        if loaded is None:
            raise NotReady("the model is not loaded yet", retry_after=2)
        return loaded

    def build_prompt(self, messages: Sequence[Message], max_tokens: int | None) -> Prompt:
        loaded = self._tokenizer_holder()
        return build_prompt(
            loaded.tokenizer,
            messages,
            context_length=loaded.info.context_length,
            history_turns=self.settings.history_turns,
            max_tokens=max_tokens,
            default_max_tokens=self.settings.default_max_tokens,
        )

    def build_text_prompt(self, text: str, max_tokens: int | None) -> Prompt:
        loaded = self._tokenizer_holder()
        return build_text_prompt(
            loaded.tokenizer,
            text,
            context_length=loaded.info.context_length,
            max_tokens=max_tokens,
            default_max_tokens=self.settings.default_max_tokens,
        )

    def admit(self, user: str) -> None:
        """Raise now what ``submit`` would (NotReady, ShuttingDown, QueueFull, RateLimited), taking ``user``'s
        allowance, before any time goes into building the prompt; then ``submit(..., admitted=True)``."""
        self.require_ready()
        assert self._scheduler is not None
        self._scheduler.admit(user)

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
        """Queue a request; raises NotReady, ShuttingDown, RateLimited or QueueFull at once.

        ``on_finished`` is called once when it ends, on the inference thread; ``arrived`` (monotonic)
        is when the request reached the daemon, so its durations include parsing and tokenizing;
        ``admitted``: ``admit`` already took the user's allowance.
        """
        self.require_ready()
        assert self._scheduler is not None
        handle = RequestHandle(request_id, loop, on_finished=on_finished, keep_text=keep_text)
        self._scheduler.submit(handle, user, prompt.ids, params, arrived, admitted=admitted)
        return handle

    @property
    def queue_depth(self) -> int:
        return self._scheduler.queue_depth if self._scheduler is not None else 0

    @property
    def in_flight(self) -> int:
        return self._scheduler.in_flight if self._scheduler is not None else 0

    @property
    def backlogged(self) -> bool:
        return self._scheduler.backlogged if self._scheduler is not None else False

    @property
    def vram_blocked(self) -> bool:
        """The next queued request waits for VRAM (admission control)."""
        return self._scheduler.vram_blocked if self._scheduler is not None else False

    def memory(self) -> tuple[int, int] | None:
        """(used, total) bytes of the model's GPU, or None on CPU."""
        loaded = self._loaded
        if loaded is None or loaded.device.type != "cuda":
            return None
        import torch

        free, total = torch.cuda.mem_get_info(loaded.device)
        return total - free, total

    @property
    def counters(self) -> Counters:
        return self._counters


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
