"""A scripted stand-in for the GPUs the scheduler reads (the ``DeviceMemory`` protocol), for tests without one.

Each GPU has a memory size, what is in use and reclaimable, and the KV-cache share of the model's layers. The
peak of each pass is scripted in order and starts when the pass begins (``begin_pass``, where the real one
resets the allocator's peak statistics); the GPU can be made to fail its health check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from trayllm.engine.device_memory import AfterRelease, GpuReading, Peak


@dataclass
class ScriptedGpu:
    index: int = 0
    total: int = 100_000
    in_use: int = 0
    reclaimable: int = 0
    kv_share: float = 1.0


@dataclass
class ScriptedGpus:
    gpus: list[ScriptedGpu] = field(default_factory=lambda: [ScriptedGpu()])
    pass_peaks: list[int] = field(default_factory=list)  # the peak each pass reaches on GPU 0, in order
    alive: bool = True
    on_release: Callable[[], None] | None = None  # runs at the moment the scheduler releases the cache
    releases: int = 0
    _watermark: int = 0

    def readings(self) -> list[GpuReading]:
        return [GpuReading(g.index, g.in_use, g.reclaimable, g.total, g.kv_share) for g in self.gpus]

    def begin_pass(self) -> None:
        self._watermark = self.pass_peaks.pop(0) if self.pass_peaks else 0

    def pass_peak(self) -> Peak | None:
        return Peak(self._watermark, self.gpus[0].total, self.gpus[0].index)

    def release(self) -> AfterRelease | None:
        self.releases += 1
        if self.on_release is not None:
            self.on_release()
        gpu = self.gpus[0]
        return AfterRelease(gpu.index, gpu.in_use, gpu.in_use + gpu.reclaimable, gpu.total)

    def healthy(self) -> bool:
        return self.alive
