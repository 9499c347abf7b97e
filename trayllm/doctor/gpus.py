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
from dataclasses import asdict, dataclass, field
from typing import Any

from trayllm.extras import EXTRA_OF, pip_install


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int]
    integrated: bool

    @property
    def bf16(self) -> bool:
        """bf16 tensor cores arrived with Ampere (compute capability 8.0)."""
        return self.compute_capability[0] >= 8


@dataclass
class Machine:
    gpus: list[Gpu] = field(default_factory=list)
    nvml_error: str | None = None
    driver: str | None = None
    cuda_driver: str | None = None  # the CUDA version the driver supports, e.g. "12.4"
    torch: str | None = None  # the installed torch version, "+cpu" for a CPU-only build
    bitsandbytes: bool = False

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
        for gpu, data in zip(self.gpus, out["gpus"], strict=True):
            data["bf16"] = gpu.bf16
        out["torch_problem"] = self.torch_problem
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe(nvml: Any = None) -> Machine:
    """Read the GPUs through ``nvml`` (the ``pynvml`` module unless a test passes recorded readings)."""
    machine = Machine(torch=_version("torch"), bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None)
    if nvml is None:
        try:
            import pynvml as nvml
        except ModuleNotFoundError as exc:
            if exc.name != "pynvml":
                raise
            machine.nvml_error = f"nvidia-ml-py is not installed: {pip_install(EXTRA_OF['pynvml'])}"
            return machine
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
            machine.gpus.append(Gpu(index, _text(nvml.nvmlDeviceGetName(handle)), total, free,
                                    (int(major), int(minor)), integrated))
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
