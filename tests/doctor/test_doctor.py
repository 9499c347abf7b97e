"""trayllm doctor: the fit formula against hand-computed cases, NVML absent (its real error) and NVML present
(recorded readings of an H100 and of a board without its own VRAM)."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from trayllm.cli import cli
from trayllm.doctor.fit import GIB, REFERENCE_MODELS, fit_table, recommendation, total_bytes, verdict
from trayllm.doctor.gpus import Machine, probe
from trayllm.doctor.report import doctor_report, to_text

MODELS = {m.size: m for m in REFERENCE_MODELS}


def test_the_formula_by_hand():
    # Llama-3.1-8B at fp16, 4096 tokens: weights 8.03e9 x 2 = 16.06e9 B; KV 2 x 32 x 8 x 128 x 4096 x 2 =
    # 536,870,912 B; overhead 1 GiB + 5 % of the weights = 1,073,741,824 + 0.803e9
    assert total_bytes(MODELS["7-8B"], "fp16", 4096) == pytest.approx(16.06e9 + 536_870_912 + 1_073_741_824 + 0.803e9)
    # Llama-3.1-70B at 4-bit: 70.6e9 x (0.5 + 1/64) = 36.403125e9; KV 2 x 80 x 8 x 128 x 4096 x 2 = 1,342,177,280
    expected = 36.403125e9 + 1_342_177_280 + 1_073_741_824 + 0.05 * 36.403125e9
    assert total_bytes(MODELS["70B"], "4-bit", 4096) == pytest.approx(expected)
    assert expected / GIB == pytest.approx(37.85, abs=0.01)
    # Llama-2-13B has no grouped-query attention: 40 KV heads make its cache 5x an 8-head model's
    assert total_bytes(MODELS["13B"], "8-bit", 8192) - total_bytes(MODELS["13B"], "8-bit", 4096) == \
        2 * 40 * 40 * 128 * 4096 * 2


@pytest.mark.parametrize(("need", "free", "total", "expected"), [
    (60, 79, 80, "fits"),  # under 80 % of 80 and under what is free
    (64, 79, 80, "fits"),  # exactly at the limit
    (70, 79, 80, "tight"),  # free, but past the 80 % SLO
    (70, 60, 80, "no"),  # more than is free
    (10, 8, 80, "no"),
])
def test_verdicts(need, free, total, expected):
    assert verdict(need, free, total, 0.8) == expected


class RecordedNvml:
    """nvidia-ml-py's functions answering with recorded readings (an H100 80GB on driver 550)."""

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):  # noqa: N801 (pynvml's name)
        pass

    def __init__(self, gpus: list[dict]) -> None:
        self.gpus = gpus
        self.shut = False

    def nvmlInit(self):  # noqa: N802
        pass

    def nvmlShutdown(self):  # noqa: N802
        self.shut = True

    def nvmlSystemGetDriverVersion(self):  # noqa: N802
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion(self):  # noqa: N802
        return 12040

    def nvmlDeviceGetCount(self):  # noqa: N802
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):  # noqa: N802
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle):  # noqa: N802
        return handle["name"].encode()

    def nvmlDeviceGetCudaComputeCapability(self, handle):  # noqa: N802
        return handle["cc"]

    def nvmlDeviceGetMemoryInfo(self, handle):  # noqa: N802
        if handle.get("unified"):
            raise self.NVMLError_NotSupported("Not Supported")
        return SimpleNamespace(total=handle["total"], free=handle["free"], used=handle["total"] - handle["free"])


H100 = {"name": "NVIDIA H100 80GB HBM3", "cc": (9, 0), "total": 85_520_809_984, "free": 84_987_478_016}


def test_an_h100_read_through_nvml_and_its_fit_table():
    nvml = RecordedNvml([H100])
    machine = probe(nvml)
    assert nvml.shut and machine.nvml_error is None
    assert (machine.driver, machine.cuda_driver) == ("550.54.15", "12.4")
    [gpu] = machine.gpus
    assert (gpu.name, gpu.compute_capability, gpu.bf16, gpu.integrated) == ("NVIDIA H100 80GB HBM3", (9, 0), True,
                                                                            False)
    machine.torch = "2.5.1+cu124"  # this test is about the GPU, not about the torch installed here
    report = doctor_report(machine, 4096, 0.8)
    by_size = {row["size"]: row for row in report["fit"]}
    assert by_size["70B"]["verdict"] == {"fp16": "no", "8-bit": "tight", "4-bit": "fits"}
    assert by_size["34B"]["verdict"]["fp16"] == "tight" and by_size["13B"]["verdict"]["fp16"] == "fits"
    assert report["recommendation"] == "70B (e.g. Llama-3.1-70B) at quantization = 4bit: 37.8 GiB"
    text = to_text(report)
    assert "GPU 0     NVIDIA H100 80GB HBM3 · discrete · 79.6 GiB total" in text and "bf16 yes" in text
    assert "70B   Llama-3.1-70B" in text


def test_a_board_without_its_own_vram_is_integrated_and_uses_system_memory():
    machine = probe(RecordedNvml([{"name": "NVIDIA GB10", "cc": (12, 1), "unified": True}]))
    [gpu] = machine.gpus
    assert gpu.integrated and gpu.total_bytes > 0 and 0 < gpu.free_bytes <= gpu.total_bytes


def test_a_gpu_with_a_cpu_only_torch_is_called_out():
    machine = Machine(gpus=probe(RecordedNvml([H100])).gpus, torch="2.13.0+cpu")
    assert "CPU-only build" in machine.torch_problem
    assert "but first" in doctor_report(machine, 4096, 0.8)["recommendation"]


def test_without_nvml_the_real_library_error_and_an_honest_recommendation():
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has the NVIDIA driver: the no-NVML path is covered where it is missing")
    result = CliRunner().invoke(cli, ["doctor", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["machine"]["gpus"] == [] and report["machine"]["nvml_error"]  # e.g. NVML Shared Library Not Found
    assert report["fit"] == [] and report["recommendation"].startswith("no NVIDIA GPU")
    text = CliRunner().invoke(cli, ["doctor"]).stdout
    assert f"none found: no NVIDIA driver / NVML ({report['machine']['nvml_error']})" in text


def test_without_nvidia_ml_py_it_names_the_extra_and_still_recommends(monkeypatch: pytest.MonkeyPatch):
    """A base install has neither nvidia-ml-py nor torch: `import pynvml` fails for real (None in sys.modules is
    how Python spells "not importable"), and the doctor still reports the CPU, exit 0."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    result = CliRunner().invoke(cli, ["doctor"], catch_exceptions=False)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == ("GPU       none found: no NVIDIA driver / NVML (nvidia-ml-py is not installed: "
                        "pip install 'trayllm[gpu]')")
    assert lines[-1].startswith("recommendation: no NVIDIA GPU: trayllm runs on the CPU.")


def test_a_gpu_without_torch_names_the_extra_that_brings_it():
    machine = Machine(gpus=probe(RecordedNvml([H100])).gpus, torch=None)
    assert machine.torch_problem == "torch is not installed: pip install 'trayllm[daemon]'"


def test_nothing_fits_on_a_small_busy_gpu():
    rows = fit_table(free_bytes=1.5 * GIB, total_memory=4 * GIB)
    assert all(v == "no" for row in rows for v in row.verdicts.values())
    assert recommendation(rows).startswith("nothing from 1B up fits")


def test_planning_for_a_24_gib_gpu_by_hand():
    """`doctor --vram 24`, with the 4096-token default and the 80 % limit (19.2 GiB), works anywhere:
    7-8B fp16: 8.03e9 x 2 B = 14.957 GiB + KV 2x32x8x128x4096x2 B = 0.5 GiB + 1 GiB + 5 % x 14.957 = 17.205 -> fits;
    13B fp16: 24.214 GiB + KV 2x40x40x128x4096x2 B = 3.125 GiB + 1 + 1.211 = 29.55 -> no (more than 24 free);
    34B 4-bit: 33.7e9 x (0.5 + 1/64) B = 16.183 GiB + KV 0.75 GiB + 1 + 0.809 = 18.742 -> fits, the largest."""
    result = CliRunner().invoke(cli, ["doctor", "--vram", "24", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    fit = {row["size"]: row for row in report["fit"]}
    assert (fit["7-8B"]["need_gib"]["fp16"], fit["7-8B"]["verdict"]["fp16"]) == (17.2, "fits")
    assert (fit["13B"]["need_gib"]["fp16"], fit["13B"]["verdict"]["fp16"]) == (29.6, "no")
    assert (fit["34B"]["need_gib"]["4-bit"], fit["34B"]["verdict"]["4-bit"]) == (18.7, "fits")
    assert report["recommendation"] == "34B (e.g. CodeLlama-34B) at quantization = 4bit: 18.7 GiB"
    assert report["fit_for"] == "a 24 GiB GPU (planned, all of it free)"
    text = CliRunner().invoke(cli, ["doctor", "--vram", "24"]).stdout
    assert "What fits on a 24 GiB GPU (planned, all of it free) with a 4096-token context" in text
    bad = CliRunner().invoke(cli, ["doctor", "--vram", "0"])
    assert bad.exit_code == 2 and "Invalid value for '--vram'" in bad.stderr
