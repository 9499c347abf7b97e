"""Helpers for driving a Scheduler from a test: a prompt, greedy params, and running a handle to its end."""

from __future__ import annotations

from trayllm.engine.handle import RequestHandle
from trayllm.engine.types import Finished, SamplingParams, TokenText

PROMPT = [1, 9690, 198, 2683, 253, 2]


def greedy(max_tokens: int, **extra: object) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, top_p=1.0, repetition_penalty=1.0, **extra)  # type: ignore[arg-type]


def run(handle: RequestHandle, timeout: float = 30) -> tuple[str, Finished]:
    text = ""
    for event in handle.iter_events(timeout=timeout):
        if isinstance(event, TokenText):
            text += event.text
        else:
            return text, event
    raise AssertionError("no Finished event")
