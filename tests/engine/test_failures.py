"""Which failed passes are out-of-memory errors, and letting go of a failed pass's frames."""

from __future__ import annotations

import gc
import weakref

import torch

from trayllm.engine.failures import forget_traceback, is_out_of_memory


def test_out_of_memory_by_type_by_text_and_through_its_cause() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert is_out_of_memory(torch.AcceleratorError("CUDA error: out of memory"))
    wrapped = RuntimeError("prefill failed")
    wrapped.__cause__ = torch.cuda.OutOfMemoryError("CUDA out of memory")
    assert is_out_of_memory(wrapped)
    assert not is_out_of_memory(torch.AcceleratorError("CUDA error: an illegal memory access was encountered"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only the runtime's own errors count


def _fail_holding(tensors: list[weakref.ref[torch.Tensor]]) -> None:
    activations = torch.ones(16)
    tensors.append(weakref.ref(activations))
    raise torch.cuda.OutOfMemoryError("CUDA out of memory")


def test_forgetting_the_traceback_frees_the_tensors_its_frames_held() -> None:
    tensors: list[weakref.ref[torch.Tensor]] = []
    caught: list[BaseException] = []
    for forget in (False, True):
        try:
            try:
                _fail_holding(tensors)
            except torch.cuda.OutOfMemoryError as inner:
                raise RuntimeError("the pass failed") from inner
        except RuntimeError as exc:
            caught.append(exc)
        if forget:
            forget_traceback(caught[-1])
        gc.collect()
    kept, forgotten = (ref() is not None for ref in tensors)
    assert kept and not forgotten
    assert caught[1].__traceback__ is None and caught[1].__cause__.__traceback__ is None
