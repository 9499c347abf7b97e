"""What the model's GPUs hold, read so that no pass is charged another's memory and no GPU is overlooked.

A model may span several GPUs (``device_map="auto"`` puts its layers on each in turn), so every reading
covers each of them. A pass's peak is taken per pass, failed passes included: the peak statistics are reset
*before* each pass, so the request that ran out of memory is the one charged with it, not whichever request
runs next. Admission sees each GPU's memory as the driver does (``mem_get_info``: other processes and the CUDA
context included) less what our allocator holds unused, and each GPU's own share of the KV cache. On the CPU
every reading is empty and admission is off. ``CudaMemory`` is the one place here that calls ``torch.cuda``;
the scheduler's tests use a scripted double of the ``DeviceMemory`` protocol.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:  # the native CPU path never imports transformers
    from transformers import PreTrainedModel

    from trayllm.engine.native_model import NativeLlama

ALLOCATOR_ENV = "PYTORCH_ALLOC_CONF"
ALLOCATOR_ENV_OLD = "PYTORCH_CUDA_ALLOC_CONF"  # the name torch read before 2.9; still honoured
ALLOCATOR_DEFAULT = "expandable_segments:True"


@dataclass(frozen=True)
class GpuReading:
    """One GPU's memory as admission sees it."""

    index: int  # CUDA ordinal
    in_use: int  # device-wide bytes in use (total - free): every process, the CUDA context, our cache
    reclaimable: int  # bytes our allocator reserved that no tensor holds now (reserved - allocated)
    total: int
    kv_share: float  # the fraction of the model's KV-cache layers that live on this GPU


@dataclass(frozen=True)
class Peak:
    """The highest allocation of a pass, on the GPU that came closest to its size."""

    bytes: int
    total: int  # that GPU's memory
    index: int

    @property
    def fraction(self) -> float:
        return self.bytes / self.total if self.total else 0.0

    def higher(self, other: Peak | None) -> Peak:
        """The nearer-to-full of two peaks (by fraction of their GPU)."""
        return self if other is None or self.fraction >= other.fraction else other


@dataclass(frozen=True)
class AfterRelease:
    """The allocator after ``release`` on the GPU that holds the most: what an OOM report shows."""

    index: int
    allocated: int
    reserved: int
    total: int


class DeviceMemory(Protocol):
    """The scheduler's view of GPU memory (empty readings and no peaks on the CPU)."""

    def readings(self) -> list[GpuReading]: ...

    def begin_pass(self) -> None: ...

    def pass_peak(self) -> Peak | None: ...

    def release(self) -> AfterRelease | None: ...

    def healthy(self) -> bool: ...


class NoGpu:
    """The CPU: nothing to read, nothing to admit against."""

    def readings(self) -> list[GpuReading]:
        return []

    def begin_pass(self) -> None:
        return None

    def pass_peak(self) -> Peak | None:
        return None

    def release(self) -> AfterRelease | None:
        return None

    def healthy(self) -> bool:
        return True


class CudaMemory:
    """``torch.cuda``'s readings for every GPU the model's layers live on."""

    def __init__(self, kv_shares: dict[int, float]) -> None:
        self._shares = kv_shares
        self._devices = [torch.device("cuda", i) for i in sorted(kv_shares)]
        self._totals = {d.index: int(torch.cuda.get_device_properties(d).total_memory) for d in self._devices}

    def readings(self) -> list[GpuReading]:
        out = []
        for device in self._devices:
            free, total = torch.cuda.mem_get_info(device)
            reclaimable = int(torch.cuda.memory_reserved(device)) - int(torch.cuda.memory_allocated(device))
            out.append(
                GpuReading(
                    device.index, int(total) - int(free), max(0, reclaimable), int(total), self._shares[device.index]
                )
            )
        return out

    def begin_pass(self) -> None:
        for device in self._devices:
            torch.cuda.reset_peak_memory_stats(device)

    def pass_peak(self) -> Peak | None:
        peak: Peak | None = None
        for device in self._devices:
            reading = Peak(int(torch.cuda.max_memory_allocated(device)), self._totals[device.index], device.index)
            peak = reading.higher(peak)
        return peak

    def release(self) -> AfterRelease | None:
        """Return the allocator's unused blocks to the driver. Call it only once nothing refers to the failed
        pass's tensors (see ``failures.forget_traceback``), or it frees nothing."""
        torch.cuda.empty_cache()
        fullest = max(self._devices, key=lambda d: torch.cuda.memory_allocated(d) / self._totals[d.index])
        return AfterRelease(
            fullest.index,
            int(torch.cuda.memory_allocated(fullest)),
            int(torch.cuda.memory_reserved(fullest)),
            self._totals[fullest.index],
        )

    def healthy(self) -> bool:
        """Whether every GPU still runs work. Some CUDA errors (an illegal address, a device-side assert) are
        sticky: the context is broken for good and every later call fails, which only a new process cures."""
        try:
            for device in self._devices:
                torch.ones(1, device=device).add_(1).item()
        except Exception:  # noqa: BLE001 - any failure here is the answer
            return False
        return True


def device_memory(model: PreTrainedModel | NativeLlama, device: torch.device) -> DeviceMemory:
    """The readings for ``model``: every GPU it has layers on, or none on the CPU."""
    if device.type != "cuda":
        return NoGpu()
    return CudaMemory(kv_shares(model, device))


def kv_shares(model: PreTrainedModel | NativeLlama, device: torch.device) -> dict[int, float]:
    """CUDA ordinal -> the fraction of the decoder layers (so of the KV cache) that live there.

    A model split by ``device_map`` keeps each decoder layer's cache on that layer's GPU; a model on one GPU
    keeps it all there. Layers are found as the decoder's ``layers`` list, which every causal LM in
    transformers has; where there is none, the whole cache is counted on every GPU the model touches (a
    conservative reading, never an optimistic one).
    """
    layers = getattr(getattr(model, "get_decoder", lambda: None)(), "layers", None)
    counts: Counter[int] = Counter()
    for layer in layers or []:
        parameter = next(layer.parameters(), None)
        if parameter is not None and parameter.device.type == "cuda":
            counts[parameter.device.index] += 1
    if counts:
        return {index: n / sum(counts.values()) for index, n in counts.items()}
    indices = {p.device.index for p in model.parameters() if p.device.type == "cuda"}
    fallback = indices or {device.index if device.index is not None else torch.cuda.current_device()}
    return {index: 1.0 for index in fallback}


def configure_cuda_allocator() -> None:
    """Ask torch's CUDA allocator for expandable segments unless the user configured it.

    Without them a long-running server's cache fragments: freed KV-cache blocks of one size cannot serve the
    next batch's larger ones, and an OOM comes with gigabytes reserved but unusable. Must run before the first
    CUDA allocation (the allocator reads the variable once).
    """
    if ALLOCATOR_ENV not in os.environ and ALLOCATOR_ENV_OLD not in os.environ:
        os.environ[ALLOCATOR_ENV] = ALLOCATOR_DEFAULT
