"""The engines one daemon serves from: the local model (at most one) and remote ones, picked by a request's ``model``.

``EngineSet`` is itself a ServingEngine, so the parts of the daemon that see the daemon as one engine (/readyz,
/metrics, the shipper's idea of busy, the drain on SIGTERM, the fault switch) need no change: its state is its
default engine's (the first: the one a request without a ``model`` goes to), its counts are the sum of all, and
pause, resume, reload and drain go to every engine. The handlers that must tell engines apart (chat completions,
/v1/models, /v1/status) ask it which engine serves a model (``route``) and for its ``members``.

A member's name is what records, alerts, status and /v1/models' ``engine`` call it: its ``[[engines]]`` name, or
"local" / "remote" for the one engine of the single-engine settings.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trayllm.api_status import EngineState
from trayllm.config import Settings
from trayllm.config_engines import EngineSpec
from trayllm.engine.handle import Counters, FinishCallback, RequestHandle
from trayllm.engine.interface import FaultSwitch, ServingEngine
from trayllm.engine.remote import RemoteEngine
from trayllm.engine.types import ModelInfo, OomReport, SamplingParams
from trayllm.engine.upstream import Upstream, read_api_key
from trayllm.errors import ConfigError, Conflict, ModelNotFound

if TYPE_CHECKING:
    from trayllm.engine.conversation import Message, Prompt


@dataclass(frozen=True)
class Member:
    """One engine of the set, under the name the daemon gives it."""

    name: str
    engine: ServingEngine

    def named(self, info: ModelInfo) -> ModelInfo:
        """``info`` naming this member as its engine (the local engine calls itself "local" whatever its table)."""
        return info if info.engine == self.name else dataclasses.replace(info, engine=self.name)

    @property
    def info(self) -> ModelInfo | None:
        info = self.engine.info
        return None if info is None else self.named(info)

    @property
    def url(self) -> str | None:
        return self.engine.base_url if isinstance(self.engine, RemoteEngine) else None

    @property
    def reachable(self) -> bool | None:
        """A remote engine's last word on its upstream; None for the local one (or before the first probe)."""
        return self.engine.reachable if isinstance(self.engine, RemoteEngine) else None

    def require_ready(self) -> ModelInfo:
        return self.named(self.engine.require_ready())


def default_name(engine: ServingEngine) -> str:
    """The name of an engine that is the daemon's only one: "remote" (or its upstream's name) or "local"."""
    return engine.upstream.name if isinstance(engine, RemoteEngine) else "local"


class EngineSet:
    """Several engines as one ServingEngine, plus the routing of a request's ``model`` to one of them."""

    def __init__(self, members: Sequence[Member]) -> None:
        if not members:
            raise ValueError("an engine set needs at least one engine")
        self.members = tuple(members)
        self.default = self.members[0]

    @classmethod
    def of(cls, engine: ServingEngine | EngineSet) -> EngineSet:
        """``engine`` as a set: itself when it is one, else a set of that one engine."""
        return engine if isinstance(engine, EngineSet) else cls([Member(default_name(engine), engine)])

    @property
    def engines(self) -> list[ServingEngine]:
        return [member.engine for member in self.members]

    # -- routing ----------------------------------------------------------------------------------------

    def route(self, model: str | None) -> Member:
        """The member serving ``model``: the default for none (or ""), else the first whose model has that name,
        else the one with that engine name, else one still loading; ModelNotFound (404) naming what is served."""
        if not model:
            return self.default
        for member in self.members:
            info = member.engine.info
            if info is not None and info.name == model:
                return member
        for member in self.members:
            if member.name == model:
                return member
        loading = next((member for member in self.members if member.engine.info is None), None)
        if loading is not None:
            return loading  # it may serve that model once it knows its own: its 503 NotReady says to wait
        served = ", ".join(repr(info.name) for info in self.served()) or "no model yet"
        raise ModelNotFound(f"model {model!r} is not served here; this daemon serves {served}", param="model")

    def served(self) -> list[ModelInfo]:
        """The model of every member that has one loaded, in the set's order."""
        return [info for member in self.members if (info := member.info) is not None]

    # -- callbacks the daemon wires: each goes to every member ---------------------------------------------

    def _fan_out(self, attribute: str, value: Any) -> None:
        for engine in self.engines:
            setattr(engine, attribute, value)

    @property
    def on_oom(self) -> Callable[[OomReport], None] | None:
        return self.default.engine.on_oom

    @on_oom.setter
    def on_oom(self, callback: Callable[[OomReport], None] | None) -> None:
        self._fan_out("on_oom", callback)

    @property
    def on_event(self) -> Callable[[str, dict[str, Any]], object] | None:
        return self.default.engine.on_event

    @on_event.setter
    def on_event(self, callback: Callable[[str, dict[str, Any]], object] | None) -> None:
        self._fan_out("on_event", callback)

    @property
    def on_fatal(self) -> Callable[[str], None] | None:
        return self.default.engine.on_fatal

    @on_fatal.setter
    def on_fatal(self, callback: Callable[[str], None] | None) -> None:
        self._fan_out("on_fatal", callback)

    def watch_reachability(self, callback: Callable[[str, str, bool, str], None]) -> None:
        """Have every remote member report its upstream going down or up (the daemon's engine alerts)."""
        for engine in self.engines:
            if isinstance(engine, RemoteEngine):
                engine.on_reachability = callback

    # -- state: the default engine's, counts summed -----------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self.default.engine.settings

    @property
    def state(self) -> EngineState:
        return self.default.engine.state

    @property
    def paused(self) -> str | None:
        return self.default.engine.paused

    @property
    def progress(self) -> str | None:
        return self.default.engine.progress

    @property
    def error(self) -> str | None:
        return self.default.engine.error

    @property
    def started_at(self) -> float:
        return min(engine.started_at for engine in self.engines)

    @property
    def info(self) -> ModelInfo | None:
        return self.default.info

    @property
    def counters(self) -> Counters:
        total = Counters()
        for engine in self.engines:
            for field in dataclasses.fields(Counters):
                setattr(total, field.name, getattr(total, field.name) + getattr(engine.counters, field.name))
        return total

    @property
    def queue_depth(self) -> int:
        return sum(engine.queue_depth for engine in self.engines)

    @property
    def in_flight(self) -> int:
        return sum(engine.in_flight for engine in self.engines)

    @property
    def backlogged(self) -> bool:
        return any(engine.backlogged for engine in self.engines)

    @property
    def vram_blocked(self) -> bool:
        return any(engine.vram_blocked for engine in self.engines)

    @property
    def faults(self) -> FaultSwitch:
        return self.default.engine.faults

    def memory(self) -> tuple[int, int] | None:
        """The GPU memory of the one engine that reports any (the local one)."""
        return next((memory for engine in self.engines if (memory := engine.memory()) is not None), None)

    # -- requests: the default engine's (the chat handler routes by model first) ---------------------------------

    def require_ready(self) -> ModelInfo:
        return self.default.require_ready()

    def require_loaded(self) -> ModelInfo:
        return self.default.named(self.default.engine.require_loaded())

    def admit(self, user: str) -> None:
        self.default.engine.admit(user)

    def build_prompt(self, messages: Sequence[Message], max_tokens: int | None) -> Prompt:
        return self.default.engine.build_prompt(messages, max_tokens)

    def build_text_prompt(self, text: str, max_tokens: int | None) -> Prompt:
        return self.default.engine.build_text_prompt(text, max_tokens)

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
        return self.default.engine.submit(
            request_id,
            user,
            prompt,
            params,
            loop,
            on_finished=on_finished,
            keep_text=keep_text,
            arrived=arrived,
            admitted=admitted,
        )

    # -- lifecycle: every engine ----------------------------------------------------------------------------

    def start(self) -> None:
        for engine in self.engines:
            engine.start()

    def pause(self, reason: str | None = None) -> None:
        for engine in self.engines:
            engine.pause(reason)

    def resume(self) -> None:
        for engine in self.engines:
            engine.resume()

    def reload(self, model: str | None = None) -> None:
        """Reload every engine that can; Conflict only when none could (each was mid-load). A switch to ``model``
        goes to the local engine alone (a remote one serves what its upstream chooses), the default without one."""
        if model is not None:
            local = next((e for e in self.engines if not isinstance(e, RemoteEngine)), self.default.engine)
            local.reload(model)
            return
        refused: list[Conflict] = []
        for engine in self.engines:
            try:
                engine.reload()
            except Conflict as exc:
                refused.append(exc)
        if len(refused) == len(self.members):
            raise refused[0]

    def begin_drain(self) -> None:
        for engine in self.engines:
            engine.begin_drain()

    def stop(self) -> None:
        for engine in self.engines:
            engine.stop()


def local_engine(settings: Settings) -> ServingEngine:
    """The model this daemon hosts, not started (ModelLoadError now when its source is missing). The only place
    the daemon imports torch, and only when a local engine is configured."""
    from trayllm.engine.engine import Engine
    from trayllm.engine.models import resolve_source

    resolve_source(settings)
    return Engine(settings)


def open_engines(settings: Settings, specs: Sequence[EngineSpec] = ()) -> EngineSet:
    """The engines ``specs`` (the config file's ``[[engines]]``) name, or without any the one the ``engine_*``
    settings ask for: a RemoteEngine for ``engine_url``, else the local model. None started."""
    if not specs:
        engine = RemoteEngine(settings) if settings.engine_url else local_engine(settings)
        return EngineSet([Member(default_name(engine), engine)])
    if settings.engine_url:
        raise ConfigError(
            "engine_url and [[engines]] tables both name engines: move the remote one into an [[engines]] table "
            "(url = ...) and unset engine_url"
        )
    members: list[Member] = []
    try:
        for spec in specs:
            if spec.local:
                engine = local_engine(dataclasses.replace(settings, model=spec.model or settings.model))
            else:
                # model names come from each upstream: one model_name for all would make them indistinguishable
                remote = dataclasses.replace(settings, model_name="", engine_url=spec.url, engine_model=spec.model)
                upstream = Upstream(spec.url, spec.model, read_api_key(spec.api_key_file), spec.name)
                engine = RemoteEngine(remote, upstream)
            members.append(Member(spec.name, engine))
    except BaseException:
        for member in members:  # a table that cannot open (a missing model) leaves nothing of the others behind
            member.engine.stop()
        raise
    return EngineSet(members)
