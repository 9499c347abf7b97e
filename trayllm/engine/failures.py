"""What a failed forward pass means: the GPU's memory ran out, the GPU is lost, or something else broke.

The three lead to different ends. An out-of-memory fails (or retries) the requests of that pass and the
daemon serves on; so does any other error, once the GPU is shown to still work. A GPU that no longer runs
work (a sticky CUDA error) fails every request from then on, so the daemon must stop and let its supervisor
start a fresh process instead of staying "ready" while every request fails.
"""

from __future__ import annotations

import traceback

import torch

OOM_MARKERS = (
    "CUBLAS_STATUS_ALLOC_FAILED",  # cuBLAS could not allocate its workspace: an OOM in all but type
    "CUDA error: out of memory",  # a kernel launch or library call that ran out (not the allocator's own error)
)


class PrefillFailed(Exception):
    """The prefill of new requests raised; the running batch was not touched, so only the newcomers fail."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the GPU running out of memory."""
    for error in _chain(exc):
        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
        if isinstance(error, RuntimeError) and any(marker in str(error) for marker in OOM_MARKERS):
            return True
    return False


def forget_traceback(exc: BaseException) -> None:
    """Drop the frames ``exc`` and its causes keep alive, with the tensors in them.

    An exception's traceback holds every frame it passed through, and those frames hold the failed pass's
    activations: until they go, ``torch.cuda.empty_cache`` can return nothing to the driver. Call this once
    the error has been logged, outside the ``except`` block that caught it.
    """
    for error in _chain(exc):
        if error.__traceback__ is not None:
            traceback.clear_frames(error.__traceback__)
        error.__traceback__ = None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and not any(current is s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
