"""A stand-in for the ``pynvml`` module with GPUs in NVML's own order, for tests of reading a device by UUID.

NVML numbers GPUs by PCI bus, blind to CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER: with
CUDA_VISIBLE_DEVICES=1, CUDA's device 0 is NVML's device 1. By index this stand-in answers as NVML does, so a
reading that takes a CUDA ordinal for an NVML index gets the wrong GPU's memory; by UUID it gets the right one.
Install it with ``monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([...]))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace


@dataclass(frozen=True)
class FakeGpu:
    uuid: str  # NVML's form: "GPU-" and 8-4-4-4-12 hex digits
    used: int
    total: int


class NVMLError(Exception):
    pass


class NVMLError_NotFound(NVMLError):  # noqa: N801 (pynvml's name)
    pass


@dataclass
class FakeNvml:
    gpus: list[FakeGpu]  # in NVML's order
    lookups: list[str | int] = field(default_factory=list)  # every handle asked for, by UUID or index

    NVMLError = NVMLError
    NVMLError_NotFound = NVMLError_NotFound

    def nvmlInit(self) -> None:  # noqa: N802 (pynvml's names, here and below)
        pass

    def nvmlShutdown(self) -> None:  # noqa: N802
        pass

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return "550.54.15"

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:  # noqa: N802
        self.lookups.append(index)
        if not 0 <= index < len(self.gpus):
            raise NVMLError("Invalid Argument")
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> FakeGpu:  # noqa: N802
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        self.lookups.append(text)
        for gpu in self.gpus:
            if gpu.uuid == text:
                return gpu
        raise NVMLError_NotFound("Not Found")

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(used=handle.used, total=handle.total, free=handle.total - handle.used)
