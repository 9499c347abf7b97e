"""The per-request record reads NVML for the model's own GPU, named by UUID, not by its CUDA ordinal.

With CUDA_VISIBLE_DEVICES=1 the model is on CUDA's device 0, which NVML (blind to that variable) calls
device 1: a record that read NVML's device 0 would report another GPU's memory.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fake_nvml import FakeGpu, FakeNvml

from trayllm.config import load_settings
from trayllm.daemon.records import RequestContext, RequestRecorder
from trayllm.engine.handle import RequestHandle
from trayllm.engine.types import Finished, ModelInfo, RequestTimings
from trayllm.telemetry.metrics import DaemonMetrics
from trayllm.telemetry.vram import NvmlProbe

HIDDEN = FakeGpu("GPU-11111111-2222-4333-8444-555555555555", used=60 * 2**30, total=80 * 2**30)
VISIBLE = FakeGpu("GPU-66666666-7777-4888-8999-aaaaaaaaaaaa", used=3 * 2**30, total=24 * 2**30)


def record_of_one_request(tmp_path: Path, info: ModelInfo) -> dict[str, Any]:
    recorder = RequestRecorder(
        load_settings({"state_dir": str(tmp_path)}, environ={}), DaemonMetrics(), NvmlProbe(), lambda: info
    )
    written: list[dict[str, Any]] = []
    recorder.observers.append(written.append)
    context = RequestContext.arriving("req-1", "alice", None)
    now = time.monotonic()
    timings = RequestTimings(arrived=now - 1.0, started=now - 0.9, first_token=now - 0.5, finished=now)
    recorder.finished(
        context,
        RequestHandle("req-1"),
        Finished("stop", 10, 20, timings, vram_peak_bytes=2 * 2**30, vram_total_bytes=info.memory_total_bytes),
    )
    recorder.close()
    (document,) = written
    return document


ON_VISIBLE_GPU = ModelInfo(
    name="m",
    version="0123456789ab-bf16",
    source="/m",
    device="cuda:0",
    dtype="bf16",
    quantization="none",
    context_length=4096,
    device_index=0,
    memory_total_bytes=VISIBLE.total,
    device_uuid=VISIBLE.uuid,
)


def test_the_record_reads_nvml_for_the_models_gpu_by_uuid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([HIDDEN, VISIBLE]))  # CUDA_VISIBLE_DEVICES=1
    info = ON_VISIBLE_GPU
    vram = record_of_one_request(tmp_path, info)["llm"]["vram"]
    assert vram["nvml"]["used"]["bytes"] == VISIBLE.used
    assert vram["nvml"]["pct"] == pytest.approx(3 / 24)
    assert vram["total"]["bytes"] == VISIBLE.total and vram["peak"]["bytes"] == 2 * 2**30


def test_without_a_uuid_the_record_has_no_nvml_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml([HIDDEN, VISIBLE])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    info = dataclasses.replace(ON_VISIBLE_GPU, device_uuid=None)
    vram = record_of_one_request(tmp_path, info)["llm"]["vram"]
    assert "nvml" not in vram and vram["peak"]["bytes"] == 2 * 2**30
    assert nvml.lookups == []  # never a guess by index
