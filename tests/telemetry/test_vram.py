"""NvmlProbe against the real pynvml: on a machine without a driver it reports the real error and reads None."""

from __future__ import annotations

import pynvml
import pytest

from trayllm.telemetry.vram import NvmlProbe, VramReading, reading_from_nvml


def _real_nvml_error() -> str | None:
    """What the real library says when asked to start here (None: it started, there is a driver)."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"{type(exc).__name__}: {exc}"
    pynvml.nvmlShutdown()
    return None


def test_without_a_driver_the_probe_reports_the_real_error_and_never_raises():
    expected = _real_nvml_error()
    if expected is None:
        pytest.skip("NVML works on this machine; the no-driver path needs a machine without one")
    probe = NvmlProbe()
    assert not probe.available
    assert probe.unavailable_reason == expected  # e.g. "NVMLError_LibraryNotFound: NVML Shared Library Not Found"
    assert probe.device_count() == 0
    assert probe.device_memory(0) is None
    assert probe.reading(0) is None
    probe.close()
    probe.close()


def test_reading_from_nvml_structs():
    # the ctypes structs nvmlDeviceGetMemoryInfo returns (v1 and v2), filled with an 80 GB H100's totals
    v1 = pynvml.c_nvmlMemory_t(total=85_520_809_984, free=85_520_809_984 - 3_221_225_472, used=3_221_225_472)
    reading = reading_from_nvml(v1)
    assert reading == VramReading(used_bytes=3_221_225_472, total_bytes=85_520_809_984)
    assert reading.pct == pytest.approx(0.03766, abs=1e-5)
    v2 = pynvml.c_nvmlMemory_v2_t(version=pynvml.nvmlMemory_v2, total=1000, reserved=10, free=790, used=200)
    assert reading_from_nvml(v2) == VramReading(200, 1000)
    assert VramReading(0, 0).pct is None


@pytest.mark.gpu
def test_readings_on_a_real_gpu():
    if _real_nvml_error() is not None:
        pytest.skip("no NVIDIA driver here")
    probe = NvmlProbe()
    assert probe.available and probe.unavailable_reason is None and probe.device_count() >= 1
    used, total = probe.device_memory(0)
    assert 0 < used <= total
    assert probe.device_memory(10_000) is None and probe.last_error  # no such device: None, not an exception
    probe.close()
