"""One request's row in the running batch, and the failures that are that request's alone.

A batch shares its forward passes, but the steps around them belong to each request: building its
generator, decoder and stop matcher when it joins, then picking, decoding and stop-checking each of its
tokens. When one of those raises, that request ends with the error and the batch carries on; the other
rows' tokens are exactly what they would have been had it not failed. A failure of a forward pass itself
belongs to the whole pass and is the scheduler's to handle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from trayllm.engine.device_memory import Peak
from trayllm.engine.handle import RequestHandle
from trayllm.engine.sampling import row_generator
from trayllm.engine.textstream import IncrementalDecoder, StopMatcher
from trayllm.engine.types import RequestTimings, SamplingParams
from trayllm.errors import EngineFailure, RequestError

if TYPE_CHECKING:
    from trayllm.engine.conversation import Tokenizer

log = logging.getLogger(__name__)


@dataclass(eq=False)  # a job is itself: compared by identity, never by its tensors
class Job:
    handle: RequestHandle
    prompt: list[int]
    params: SamplingParams
    timings: RequestTimings
    deadline: float
    generated: int = 0
    next_token: int = -1
    done: bool = False
    decoder: IncrementalDecoder | None = None
    stopper: StopMatcher = field(default_factory=lambda: StopMatcher(()))
    generator: torch.Generator | None = None
    vram_peak: Peak | None = None  # the highest of the passes it took part in
    retried: bool = False  # already put back once after an OOM
    solo: bool = False  # runs alone (its retry after an OOM)

    def start(self, tokenizer: Tokenizer, device: torch.device, started: float) -> None:
        """Build this request's own decoding state as it joins the batch; raises for its bad parameters
        (a seed torch cannot take), which must fail it before its prompt is run with anyone else's."""
        self.decoder = IncrementalDecoder(tokenizer)
        self.stopper = StopMatcher(self.params.stop)
        self.generator = row_generator(self.params, device)
        self.timings.started = started  # only once it can run: a request that failed here never started


def own_failure(exc: Exception, job: Job) -> RequestError:
    """The error ``job`` ends with when a step of its own raised ``exc``.

    A RequestError is passed on as raised: the engine raises those for a request's bad parameters, so
    they stay the client's fault (a 4xx, outside the error budget). Anything else is unplanned, so it is
    ours: an EngineFailure for this request only, logged with its traceback.
    """
    if isinstance(exc, RequestError):
        return exc
    log.error("request %s failed on its own; the rest of its batch goes on", job.handle.request_id, exc_info=exc)
    return EngineFailure(f"generation failed for this request: {type(exc).__name__}: {exc}")
