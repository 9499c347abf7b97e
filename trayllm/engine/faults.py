"""Fault injection, so the OOM and slow-request paths run end to end on a machine without a GPU.

Off unless the daemon runs with ``fault_injection = true`` (then ``PUT /v1/faults`` sets a plan). The
inference thread calls ``FaultPlan.hit(phase)`` just before each forward pass: ``prefill`` (new
requests enter the batch) or ``decode`` (one step of the running batch). A plan can

- raise a real ``torch.cuda.OutOfMemoryError`` at a phase, ``oom_count`` times: the engine's own OOM
  handling (free the cache, fail or retry the requests, raise the alert) is what runs next, unchanged;
- sleep ``delay_s`` before every pass of a phase: a prefill delay is first-token latency, a decode
  delay slows every token.

Nothing else in the engine knows about faults; with no plan set, ``hit`` is one attribute check.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

Phase = Literal["prefill", "decode"]
PHASES: tuple[str, ...] = ("prefill", "decode")


@dataclass(frozen=True)
class Faults:
    """One injection plan (all off by default)."""

    oom_at: Phase | None = None  # raise torch.cuda.OutOfMemoryError before this phase's pass
    oom_count: int = 1  # ... this many times, then stop
    delay_at: Phase | None = None  # sleep before every pass of this phase
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("oom_at", "delay_at"):
            value = getattr(self, name)
            if value is not None and value not in PHASES:
                raise ValueError(f"{name} must be one of {', '.join(PHASES)} or null, got {value!r}")
        if isinstance(self.oom_count, bool) or not isinstance(self.oom_count, int):
            raise ValueError(f"oom_count must be an integer, got {self.oom_count!r}")
        if isinstance(self.delay_s, bool) or not isinstance(self.delay_s, (int, float)):
            raise ValueError(f"delay_s must be a number of seconds, got {self.delay_s!r}")
        if self.oom_count < 0 or not 0 <= self.delay_s <= 600:
            raise ValueError("need oom_count >= 0 and 0 <= delay_s <= 600")

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
        """Called before a forward pass: sleep and/or raise as planned."""
        faults = self._faults
        if faults.delay_at == phase and faults.delay_s > 0:
            time.sleep(faults.delay_s)
        if faults.oom_at != phase:
            return
        with self._lock:
            if self._ooms_left <= 0:
                return
            self._ooms_left -= 1
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected by trayllm fault injection at {phase})")
