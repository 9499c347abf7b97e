"""Which of the GPUs that NVML lists a CUDA process sees, and as which ``cuda:N``.

NVML (and nvidia-smi) number the GPUs in an order of their own and ignore the environment, while
``device = cuda:N`` is CUDA's number, which two environment variables decide (NVIDIA's "CUDA Environment
Variables"). CUDA first orders every GPU: by PCI bus id under ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, fastest first
by default, by a heuristic NVIDIA does not publish. Among GPUs of one model there is no fastest, and the doctor
takes their order to be the bus order; across models it cannot predict it. ``CUDA_VISIBLE_DEVICES`` then keeps
the GPUs its entries name, numbered in the order of the entries: an integer is a position in that first order,
``GPU-`` and enough of the start of a UUID to name one GPU is that GPU, and the first entry that names no GPU
hides itself and every entry after it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trayllm.doctor.gpus import Gpu

BUS_ORDER_HINT = "set CUDA_DEVICE_ORDER=PCI_BUS_ID (for the daemon too) to make it the PCI bus order shown here"


@dataclass(frozen=True)
class CudaView:
    """By NVML index: whether CUDA sees each GPU (None: cannot tell) and, where certain, its N in ``cuda:N``."""

    visible: dict[int, bool | None]
    ordinals: dict[int, int]
    note: str | None = None


def cuda_view(gpus: Sequence[Gpu], visible_devices: str | None, device_order: str | None) -> CudaView:
    """What a process with these two environment variables sees of ``gpus`` (all the GPUs NVML lists)."""
    if not gpus:
        return CudaView({}, {})
    exact = device_order == "PCI_BUS_ID" or len({gpu.name for gpu in gpus}) <= 1
    order = sorted(gpus, key=lambda gpu: _bus_key(gpu.pci_bus_id))
    if visible_devices is None:
        if exact:
            return CudaView({gpu.index: True for gpu in gpus}, {gpu.index: n for n, gpu in enumerate(order)})
        return CudaView(
            {gpu.index: True for gpu in gpus},
            {},
            f"cuda:N follows CUDA's fastest-first order, which the doctor cannot predict for GPUs of "
            f"different models: {BUS_ORDER_HINT}",
        )
    seen: list[Gpu] = []
    for entry in (part.strip() for part in visible_devices.split(",")):
        if entry.startswith("MIG-"):
            return _unknown(
                gpus, f"CUDA_VISIBLE_DEVICES names a MIG instance ({entry}), which the doctor does not map to a GPU"
            )
        if not exact and entry.isdigit() and int(entry) < len(gpus):
            return _unknown(
                gpus,
                f"CUDA_VISIBLE_DEVICES={visible_devices} counts GPUs in CUDA's fastest-first "
                f"order, which the doctor cannot predict for GPUs of different models: name "
                f"them by UUID (GPU-…), or {BUS_ORDER_HINT}",
            )
        gpu = _named(entry, gpus, order)
        if gpu is None:
            note = (
                f"CUDA_VISIBLE_DEVICES entry {entry!r} names no GPU here: CUDA ignores it and every entry after it"
                if entry
                else None
            )
            return _seeing(gpus, seen, note)
        if gpu in seen:
            return _unknown(
                gpus, f"CUDA_VISIBLE_DEVICES names GPU {gpu.index} twice, and CUDA does not document what it does then"
            )
        seen.append(gpu)
    return _seeing(gpus, seen, None)


def _named(entry: str, gpus: Sequence[Gpu], order: list[Gpu]) -> Gpu | None:
    """The GPU one entry names: by its position in CUDA's ``order``, or by the start of its UUID."""
    if entry.startswith("GPU-"):
        matches = [gpu for gpu in gpus if gpu.uuid.startswith(entry)]
        return matches[0] if len(matches) == 1 else None
    return order[int(entry)] if entry.isdigit() and int(entry) < len(order) else None


def _seeing(gpus: Sequence[Gpu], seen: list[Gpu], note: str | None) -> CudaView:
    if not seen:
        note = f"{note}; " if note else ""
        note += "CUDA_VISIBLE_DEVICES hides every GPU: the daemon runs on the CPU"
    return CudaView({gpu.index: gpu in seen for gpu in gpus}, {gpu.index: n for n, gpu in enumerate(seen)}, note)


def _unknown(gpus: Sequence[Gpu], note: str) -> CudaView:
    return CudaView({gpu.index: None for gpu in gpus}, {}, note)


def _bus_key(bus_id: str) -> tuple[int, ...]:
    """``00000000:3B:00.0`` as (domain, bus, device, function), the order CUDA_DEVICE_ORDER=PCI_BUS_ID uses."""
    return tuple(int(part, 16) for part in re.split(r"[:.]", bus_id))
