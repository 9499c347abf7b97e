"""Fault injection, so the OOM, slow-request and failed-request paths run end to end on a machine without a GPU.

Off unless the daemon runs with ``fault_injection = true`` (then ``PUT /v1/faults`` sets a plan). The
inference thread calls ``FaultPlan.hit(phase)`` just before each forward pass: ``prefill`` (new
requests enter the batch) or ``decode`` (one step of the running batch). A plan can

- raise a real ``torch.cuda.OutOfMemoryError`` at a phase, ``oom_count`` times: the engine's own OOM
  handling (free the cache, fail or retry the requests, raise the alert) is what runs next, unchanged;
- lose the GPU at a phase (``lose_device_at``): raise the ``torch.AcceleratorError`` of an illegal memory
  access, and from then on ``device_lost`` is true, as a health check of a GPU in that state would find; the
  engine's handling of a sticky CUDA error (fail everything, tell the daemon to exit non-zero) runs next;
- sleep ``delay_s`` before every pass of a phase: a prefill delay is first-token latency, a decode
  delay slows every token;
- make one request's own token step raise (``fail_request``, its request id, once it has generated
  ``fail_after_tokens`` tokens): ``FaultPlan.hit_row`` is called where that request's sampled token is
  taken, so the engine's per-request isolation (that request fails alone, its batch goes on) is what runs.

Nothing else in the engine knows about faults; with no plan set, ``hit`` and ``hit_row`` are one
attribute check.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

Phase = Literal["prefill", "decode"]
PHASES: tuple[str, ...] = ("prefill", "decode")


@dataclass(frozen=True)
class Faults:
    """One injection plan (all off by default)."""

    oom_at: Phase | None = None  # raise torch.cuda.OutOfMemoryError before this phase's pass
    oom_count: int = 1  # ... this many times, then stop
    delay_at: Phase | None = None  # sleep before every pass of this phase
    delay_s: float = 0.0
    fail_request: str | None = None  # the request id whose own token step raises
    fail_after_tokens: int = 0  # ... once it has generated this many tokens
    lose_device_at: Phase | None = None  # raise a sticky CUDA error before this phase's pass; the GPU stays lost

    def __post_init__(self) -> None:
        for name in ("oom_at", "delay_at", "lose_device_at"):
            value = getattr(self, name)
            if value is not None and value not in PHASES:
                raise ValueError(f"{name} must be one of {', '.join(PHASES)} or null, got {value!r}")
        if isinstance(self.delay_s, bool) or not isinstance(self.delay_s, (int, float)):
            raise ValueError(f"delay_s must be a number of seconds, got {self.delay_s!r}")
        if self.fail_request is not None and not isinstance(self.fail_request, str):
            raise ValueError(f"fail_request must be a request id, got {self.fail_request!r}")
        for name in ("oom_count", "fail_after_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not 0 <= self.delay_s <= 600:
            raise ValueError("need 0 <= delay_s <= 600")

    @classmethod
    def from_json(cls, data: Any) -> Faults:
        """A plan from a JSON object; ValueError naming the problem for anything else."""
        if not isinstance(data, dict):
            raise ValueError("the fault plan must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultPlan:
    """The plan in force, shared between the HTTP side (set) and the inference thread (hit)."""

    def __init__(self) -> None:
        self._faults = Faults()
        self._ooms_left = 0
        self._lock = threading.Lock()
        self.device_lost = False  # an injected sticky error happened: the GPU would fail every health check now

    def set(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._ooms_left = faults.oom_count if faults.oom_at is not None else 0

    @property
    def current(self) -> dict[str, Any]:
        """The plan, with how many injected OOMs are still to come."""
        with self._lock:
            return {**self._faults.to_dict(), "ooms_left": self._ooms_left}

    def hit(self, phase: Phase) -> None:
        """Called before a forward pass: sleep and/or raise as planned. torch is imported only here, by the
        inference thread that has it loaded already: the daemon's control side, and a daemon serving a remote
        engine, read and set plans without it."""
        import torch

        faults = self._faults
        if faults.delay_at == phase and faults.delay_s > 0:
            time.sleep(faults.delay_s)
        if faults.lose_device_at == phase:
            self.device_lost = True
            raise torch.AcceleratorError(
                f"CUDA error: an illegal memory access was encountered (injected by trayllm fault injection at {phase})"
            )
        if faults.oom_at != phase:
            return
        with self._lock:
            if self._ooms_left <= 0:
                return
            self._ooms_left -= 1
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected by trayllm fault injection at {phase})")

    def hit_row(self, request_id: str, generated: int) -> None:
        """Called where a request's own next token is taken: raise if the plan fails this request now."""
        faults = self._faults
        if faults.fail_request == request_id and generated >= faults.fail_after_tokens:
            raise InjectedFault(f"request {request_id} failed by trayllm fault injection after {generated} tokens")


class InjectedFault(RuntimeError):
    """The failure ``fail_request`` plans: unplanned as far as the engine can tell, like a bug in one row."""
