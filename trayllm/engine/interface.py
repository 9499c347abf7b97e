"""What the daemon needs of an engine: the one interface every engine it serves from satisfies.

The daemon (trayllm/daemon/) reaches its engine only through ``ServingEngine``, so another kind of engine (a
model served elsewhere) or the fake one in the tests plugs in without the daemon's code changing. Nothing
here imports torch or transformers: the daemon's HTTP side, and the tests of it, can hold an engine without
loading either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from trayllm.api_status import EngineState
from trayllm.config import Settings
from trayllm.engine.handle import Counters, FinishCallback, RequestHandle
from trayllm.engine.types import ModelInfo, OomReport, SamplingParams

if TYPE_CHECKING:
    from trayllm.engine.conversation import Message, Prompt
    from trayllm.engine.faults import Faults


class FaultSwitch(Protocol):
    """Where ``/v1/faults`` puts the fault-injection plan, and reads it back."""

    def set(self, faults: Faults) -> None: ...

    @property
    def current(self) -> dict[str, Any]: ...


class ServingEngine(Protocol):
    """An engine as the daemon uses it: its state for /v1/status, admission and submission for
    /v1/chat/completions, the control endpoints' levers, and the callbacks the daemon wires to its records,
    alerts and event stream."""

    # -- what the daemon wires in: each is called from the engine's own threads --------------------------
    on_oom: Callable[[OomReport], None] | None
    on_event: Callable[[str, dict[str, Any]], object] | None  # state changes, for /v1/events (bus.publish)
    on_fatal: Callable[[str], None] | None  # the engine can never serve again: the daemon must exit

    # -- state, for /v1/status, /v1/events' hello, /metrics and the shipper's idea of busy -----------------
    @property
    def settings(self) -> Settings: ...

    @property
    def state(self) -> EngineState: ...

    @property
    def paused(self) -> str | None:
        """The reason, while new requests are refused with 503 ``paused``."""

    @property
    def progress(self) -> str | None:
        """What a load is doing now, for a client waiting on it."""

    @property
    def error(self) -> str | None:
        """Why the last load failed."""

    @property
    def started_at(self) -> float:
        """``time.monotonic()`` when the engine was made: the daemon's uptime."""

    @property
    def info(self) -> ModelInfo | None: ...

    @property
    def counters(self) -> Counters: ...

    @property
    def queue_depth(self) -> int: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def backlogged(self) -> bool: ...

    @property
    def vram_blocked(self) -> bool: ...

    @property
    def faults(self) -> FaultSwitch: ...

    def memory(self) -> tuple[int, int] | None:
        """(used, total) bytes of the model's GPU, or None where there is none to report."""

    # -- requests ---------------------------------------------------------------------------------------
    def require_ready(self) -> ModelInfo:
        """The model's info, or NotReady / ShuttingDown / Paused when requests cannot be served."""

    def require_loaded(self) -> ModelInfo:
        """The model's info, or NotReady / ShuttingDown; a paused engine still has its model."""

    def admit(self, user: str) -> None:
        """Raise now what ``submit`` would, taking ``user``'s allowance, before the prompt is built."""

    def build_prompt(self, messages: Sequence[Message], max_tokens: int | None) -> Prompt:
        """The window of ``messages`` that fits, with its reply budget; InvalidRequest or
        ContextLengthExceeded otherwise. Called off the event loop: it may take seconds. The local engine
        tokenizes here; a remote one keeps the messages for the server it forwards to, which tokenizes."""

    def build_text_prompt(self, text: str, max_tokens: int | None) -> Prompt:
        """A raw prompt (legacy completions, Ollama's raw generate): no chat template, nothing dropped; refused
        whole when it does not fit. Called off the event loop, as ``build_prompt``."""

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
        """Queue a request; its TokenText and Finished events arrive on the returned handle, and then
        ``on_finished`` (the caller's record of it) is called once, on an engine thread."""

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None: ...

    def pause(self, reason: str | None = None) -> None: ...

    def resume(self) -> None: ...

    def reload(self, model: str | None = None) -> None:
        """Load the model again in the background, or with ``model`` (a ``model`` setting's value) switch to that
        one, keeping the old one serving when the switch cannot work (ModelLoadError, or InvalidRequest where the
        engine cannot switch at all); Conflict while a load is under way."""

    def begin_drain(self) -> None:
        """Refuse new requests; in-flight ones carry on."""

    def stop(self) -> None: ...
