"""Plain data passed between the engine and its caller: what to generate, what came out, what it cost.

No torch here, so the daemon's HTTP layer and the tests can build and read these freely.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from trayllm.errors import RequestError

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class SamplingParams:
    """Per-request generation settings, already resolved against the daemon's defaults."""

    max_tokens: int
    temperature: float
    top_p: float
    repetition_penalty: float
    seed: int | None = None
    stop: tuple[str, ...] = ()
    frequency_penalty: float = 0.0  # OpenAI's: minus this times the token's count in the reply so far
    presence_penalty: float = 0.0  # OpenAI's: minus this once the token is anywhere in the reply so far

    @property
    def penalises_output(self) -> bool:
        """Whether the reply's own tokens are penalised (``sampling.apply_output_penalties``), so its batch must
        count them; most requests leave both at 0 and their batch counts nothing."""
        return self.frequency_penalty != 0.0 or self.presence_penalty != 0.0


@dataclass(frozen=True)
class ModelInfo:
    """What is loaded, for /v1/models, /v1/status and every request record."""

    name: str
    version: str
    source: str
    device: str
    dtype: str
    quantization: str
    context_length: int
    device_index: int | None = None  # CUDA device number; None on CPU
    memory_total_bytes: int | None = None  # that device's memory; None on CPU
    device_uuid: str | None = None  # that device as NVML names it ("GPU-..."): NVML's indexes are not CUDA's
    engine: str = "local"  # the engine that serves it: its [[engines]] name, "local" or "remote" by default
    engine_url: str | None = None  # a remote engine's upstream base URL


@dataclass
class RequestTimings:
    """Monotonic timestamps of one request's life; durations are derived, never stored twice."""

    arrived: float = field(default_factory=time.monotonic)
    started: float | None = None
    first_token: float | None = None
    finished: float | None = None

    def _ms(self, start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else (end - start) * 1000.0

    @property
    def queue_ms(self) -> float:
        return self._ms(self.arrived, self.started or self.finished or time.monotonic()) or 0.0

    @property
    def first_token_ms(self) -> float | None:
        return self._ms(self.arrived, self.first_token)

    @property
    def total_ms(self) -> float:
        return self._ms(self.arrived, self.finished or time.monotonic()) or 0.0


@dataclass(frozen=True)
class TokenText:
    """New reply text (one or more tokens' worth; empty while a stop string might be forming)."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The last event of every request, whatever its fate."""

    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    timings: RequestTimings
    error: RequestError | None = None
    vram_peak_bytes: int | None = None  # CUDA allocator peak over the passes this request took part in
    vram_total_bytes: int | None = None  # the memory of the GPU that peak was on (the fullest, on several)
    vram_peak_fraction: float | None = None  # a remote engine's: the upstream's KV-cache usage (0-1), no bytes

    @property
    def decode_tokens_per_second(self) -> float | None:
        t = self.timings
        if self.completion_tokens < 2 or t.first_token is None or t.finished is None:
            return None
        elapsed = t.finished - t.first_token
        return (self.completion_tokens - 1) / elapsed if elapsed > 0 else None


@dataclass(frozen=True)
class OomReport:
    """What was running when the GPU ran out of memory: the forensics an OOM alert carries."""

    phase: Literal["prefill", "decode"]
    request_ids: tuple[str, ...]
    prompt_tokens: int  # summed over the requests in the failed pass
    max_tokens: int  # the largest max_tokens among them
    retried: bool  # the requests were put back to run once more, alone, with half the max_tokens
    allocated_bytes: int | None = None  # torch.cuda.memory_allocated after empty_cache (None on CPU)
    reserved_bytes: int | None = None
    total_bytes: int | None = None
    device_index: int | None = None  # the CUDA ordinal those figures are for: the fullest GPU after the OOM

    @property
    def message(self) -> str:
        n = len(self.request_ids)
        fate = "retrying once with half the max_tokens" if self.retried else "failed with 503"
        return (
            f"GPU out of memory during {self.phase} of {n} request{'s' if n != 1 else ''} "
            f"({self.prompt_tokens} prompt tokens, max_tokens up to {self.max_tokens}); {fate}"
        )


EngineEvent = TokenText | Finished
