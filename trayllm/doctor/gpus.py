"""What the machine's NVIDIA GPUs are, read through NVML, and what else decides whether trayllm can use them.

NVML is loaded through nvidia-ml-py (``pynvml``), which the ``daemon`` and ``gpu`` extras install; a base install
lacks it, and the doctor then says so (with the extra to install) and reports the machine as one without NVML,
as it does where the NVIDIA driver is missing and ``nvmlInit`` fails with the library's own error. Nothing here
imports torch (the doctor is a client, and a base install has no torch): the torch build is read from its
package metadata, where a CPU-only build says ``+cpu``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from trayllm.cuda_facts import has_bf16_tensor_cores
from trayllm.doctor.cuda_order import CudaView, cuda_view
from trayllm.extras import EXTRA_OF, pip_install


@dataclass(frozen=True)
class Gpu:
    index: int  # NVML's (and nvidia-smi's) number, not CUDA's: see ``Machine.cuda``
    name: str
    uuid: str
    pci_bus_id: str
    total_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int]
    integrated: bool

    @property
    def bf16(self) -> bool:
        """The engine's rule, so that the doctor says bf16 where the engine would load a model in bf16."""
        return has_bf16_tensor_cores(self.compute_capability)


@dataclass
class Machine:
    gpus: list[Gpu] = field(default_factory=list)
    nvml_error: str | None = None
    driver: str | None = None
    cuda_driver: str | None = None  # the CUDA version the driver supports, e.g. "12.4"
    torch: str | None = None  # the installed torch version, "+cpu" for a CPU-only build
    bitsandbytes: bool = False
    cuda_visible_devices: str | None = None  # as this process's environment has them: the daemon's may differ
    cuda_device_order: str | None = None

    @property
    def cuda(self) -> CudaView:
        """Which GPUs a CUDA process started in this environment sees, and which ``cuda:N`` each one is."""
        return cuda_view(self.gpus, self.cuda_visible_devices, self.cuda_device_order)

    @property
    def torch_problem(self) -> str | None:
        """Why the installed torch cannot use the GPU that is there, if it cannot."""
        if not self.gpus:
            return None
        if self.torch is None:
            return f"torch is not installed: {pip_install('daemon')}"
        if "+cpu" in self.torch:
            return f"torch {self.torch} is a CPU-only build: reinstall with `make distclean setup` on this machine"
        return None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        cuda = self.cuda
        for gpu, data in zip(self.gpus, out["gpus"], strict=True):
            data["bf16"] = gpu.bf16
            data["cuda_visible"] = cuda.visible[gpu.index]
            data["cuda_device"] = f"cuda:{cuda.ordinals[gpu.index]}" if gpu.index in cuda.ordinals else None
        out["cuda_note"] = cuda.note
        out["torch_problem"] = self.torch_problem
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe(nvml: Any = None, environ: Mapping[str, str] = os.environ) -> Machine:
    """Read the GPUs through ``nvml`` (the ``pynvml`` module unless a test passes recorded readings), and the
    two environment variables that decide which of them CUDA sees, and in which order."""
    machine = Machine(
        torch=_version("torch"),
        bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None,
        cuda_visible_devices=environ.get("CUDA_VISIBLE_DEVICES"),
        cuda_device_order=environ.get("CUDA_DEVICE_ORDER"),
    )
    if nvml is None:
        try:
            import pynvml
        except ModuleNotFoundError as exc:
            if exc.name != "pynvml":
                raise
            machine.nvml_error = f"nvidia-ml-py is not installed: {pip_install(EXTRA_OF['pynvml'])}"
            return machine
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        machine.nvml_error = str(exc)
        return machine
    try:
        machine.driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda = int(nvml.nvmlSystemGetCudaDriverVersion())
        machine.cuda_driver = f"{cuda // 1000}.{cuda % 1000 // 10}"
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            try:
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                total, free, integrated = int(memory.total), int(memory.free), False
            except nvml.NVMLError_NotSupported:  # memory shared with the CPU (GB10-class boards): no own VRAM
                total, free, integrated = _system_memory()
            machine.gpus.append(
                Gpu(
                    index,
                    _text(nvml.nvmlDeviceGetName(handle)),
                    _text(nvml.nvmlDeviceGetUUID(handle)),
                    _text(nvml.nvmlDeviceGetPciInfo(handle).busId),
                    total,
                    free,
                    (int(major), int(minor)),
                    integrated,
                )
            )
    finally:
        nvml.nvmlShutdown()
    return machine


def _system_memory() -> tuple[int, int, bool]:
    """(total, available, True): an integrated GPU's memory is the machine's."""
    page = os.sysconf("SC_PAGE_SIZE")
    return page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES"), True


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
