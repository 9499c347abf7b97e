"""NvmlProbe against the real pynvml (on a machine without a driver it reports the real error and reads None),
and against a stand-in that numbers GPUs as NVML does, to read a device by its UUID."""

from __future__ import annotations

import sys

import pynvml
import pytest
from fake_nvml import FakeGpu, FakeNvml

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


# -- by UUID, against a stand-in for pynvml ----------------------------------------------------------------

FIRST = FakeGpu("GPU-0a1b2c3d-0000-4000-8000-000000000001", used=1_000, total=10_000)
SECOND = FakeGpu("GPU-0a1b2c3d-0000-4000-8000-000000000002", used=7_000, total=20_000)


def test_a_device_is_read_by_uuid_whatever_its_nvml_index(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml([FIRST, SECOND])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    probe = NvmlProbe()
    assert probe.available and probe.driver_version == "550.54.15"
    assert probe.reading(SECOND.uuid) == VramReading(7_000, 20_000)
    assert probe.device_memory(FIRST.uuid) == (1_000, 10_000)
    assert probe.device_memory(1) == (7_000, 20_000)  # an index is still NVML's index
    assert probe.reading(SECOND.uuid) == VramReading(7_000, 20_000)
    assert nvml.lookups == [SECOND.uuid, FIRST.uuid, 1]  # each handle looked up once, then cached


def test_an_unknown_uuid_reads_none_and_is_looked_up_again_next_time(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml([FIRST])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    probe = NvmlProbe()
    gone = "GPU-ffffffff-ffff-4fff-bfff-ffffffffffff"
    assert probe.reading(gone) is None
    assert probe.last_error == "NVMLError_NotFound: Not Found"
    nvml.gpus.append(FakeGpu(gone, used=5, total=50))  # e.g. the driver came back
    assert probe.device_memory(gone) == (5, 50)
    assert nvml.lookups == [gone, gone]
