"""Device-memory readings from NVML, which must never be able to hurt serving.

torch's allocator only sees this process; NVML sees the whole device (other processes, the CUDA
context, fragmentation), which is what runs out in an OOM. ``NvmlProbe`` initialises NVML once. Where
there is no NVIDIA driver (CPU machines, containers without the GPU mounted) or no ``pynvml`` it keeps the
real error text in ``unavailable_reason`` for ``trayllm doctor`` and ``/v1/status``, and every reading is
None. A reading that fails later (GPU lost, driver reset) is None too, with the error in ``last_error``.
Nothing here raises into the caller.

pynvml is the ``nvidia-ml-py`` package; it is imported here only, lazily, and never pulls in torch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VramReading:
    """One device's memory: bytes used and in all."""

    used_bytes: int
    total_bytes: int

    @property
    def pct(self) -> float | None:
        """Used as a fraction of total, 0–1 (None for a device that reports no memory)."""
        return self.used_bytes / self.total_bytes if self.total_bytes > 0 else None


def reading_from_nvml(info: Any) -> VramReading:
    """Turn what ``nvmlDeviceGetMemoryInfo`` returns (``c_nvmlMemory_t``, or the v2 struct) into a reading."""
    return VramReading(used_bytes=int(info.used), total_bytes=int(info.total))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class NvmlProbe:
    """NVML, initialised once; readings or None, never an exception."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nvml: Any = None  # the pynvml module once NVML is up
        self._handles: dict[int | str, Any] = {}
        self.unavailable_reason: str | None = None
        self.last_error: str | None = None
        self.driver_version: str | None = None
        try:
            import pynvml
        except ImportError as exc:
            self.unavailable_reason = f"pynvml is not installed (pip install nvidia-ml-py): {_describe(exc)}"
            return
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, _NoPermission, ...
            self.unavailable_reason = _describe(exc)
            return
        self._nvml = pynvml
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
            self.driver_version = version.decode() if isinstance(version, bytes) else str(version)
        except Exception as exc:  # informational only
            self.last_error = _describe(exc)

    @property
    def available(self) -> bool:
        """Whether NVML initialised."""
        return self._nvml is not None

    def device_count(self) -> int:
        """How many NVIDIA devices NVML sees (0 when unavailable)."""
        if self._nvml is None:
            return 0
        try:
            return int(self._nvml.nvmlDeviceGetCount())
        except Exception as exc:
            self.last_error = _describe(exc)
            return 0

    def reading(self, device: int | str = 0) -> VramReading | None:
        """A device's memory now, or None (NVML unavailable, no such device, or the call failed).

        ``device`` is an NVML index, or a UUID ("GPU-..."): NVML numbers devices blind to CUDA_VISIBLE_DEVICES
        and CUDA_DEVICE_ORDER, so for the device a CUDA ordinal names, ask by its UUID.
        """
        nvml = self._nvml
        if nvml is None:
            return None
        try:
            with self._lock:
                handle = self._handles.get(device)
                if handle is None:
                    by_uuid = isinstance(device, str)
                    find = nvml.nvmlDeviceGetHandleByUUID if by_uuid else nvml.nvmlDeviceGetHandleByIndex
                    handle = self._handles[device] = find(device)
            return reading_from_nvml(nvml.nvmlDeviceGetMemoryInfo(handle))
        except Exception as exc:  # GPU lost, no such device, driver reset: a missing reading, not a failure
            self.last_error = _describe(exc)
            with self._lock:
                self._handles.pop(device, None)
            return None

    def device_memory(self, device: int | str = 0) -> tuple[int, int] | None:
        """``(used_bytes, total_bytes)`` of ``device`` (an NVML index or UUID, as for ``reading``), or None."""
        reading = self.reading(device)
        return None if reading is None else (reading.used_bytes, reading.total_bytes)

    def close(self) -> None:
        """Shut NVML down (readings are None afterwards). Idempotent."""
        nvml, self._nvml = self._nvml, None
        self._handles.clear()
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except Exception as exc:
                self.last_error = _describe(exc)
