"""trayllm doctor: the fit formula against hand-computed cases, NVML absent (its real error) and NVML present
(the readings of an H100 and of a board without its own VRAM, and of two GPUs that CUDA numbers differently)."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

import trayllm.cuda_facts
from trayllm.cli import cli
from trayllm.doctor.fit import GIB, REFERENCE_MODELS, fit_table, recommendation, total_bytes, verdict, weights_bytes
from trayllm.doctor.gpus import Gpu, Machine, probe
from trayllm.doctor.report import doctor_report, to_text

MODELS = {m.size: m for m in REFERENCE_MODELS}


def test_the_formula_by_hand():
    # Llama-3.1-8B at fp16, 4096 tokens: weights 8.03e9 x 2 = 16.06e9 B; KV 2 x 32 x 8 x 128 x 4096 x 2 =
    # 536,870,912 B; overhead 1 GiB + 5 % of the weights = 1,073,741,824 + 0.803e9
    assert total_bytes(MODELS["7-8B"], "fp16", 4096) == pytest.approx(16.06e9 + 536_870_912 + 1_073_741_824 + 0.803e9)
    # Llama-3.1-70B at 4-bit: embedding and lm_head 2 x 128,256 x 8,192 = 2,101,346,304 stay at 2 bytes
    # (4,202,692,608 B); the other 68,498,653,696 x (0.5 + 1/64) = 35,319,618,312 B; KV 2 x 80 x 8 x 128 x 4096 x 2
    weights = 35_319_618_312 + 4_202_692_608
    expected = weights + 1_342_177_280 + 1_073_741_824 + 0.05 * weights
    assert total_bytes(MODELS["70B"], "4-bit", 4096) == pytest.approx(expected)
    assert expected / GIB == pytest.approx(40.90, abs=0.01)
    # Llama-2-13B has no grouped-query attention: 40 KV heads make its cache 5x an 8-head model's
    assert (
        total_bytes(MODELS["13B"], "8-bit", 8192) - total_bytes(MODELS["13B"], "8-bit", 4096)
        == 2 * 40 * 40 * 128 * 4096 * 2
    )


def test_bitsandbytes_leaves_the_embedding_and_an_untied_lm_head_at_2_bytes():
    """Llama-3.1-8B (vocabulary 128,256, hidden 4,096, untied): 2 x 525,336,576 = 1,050,673,152 parameters at
    2 bytes = 2,101,346,304 B; the other 8.03e9 - 1,050,673,152 = 6,979,326,848 are the Linear layers.
    4-bit: 6,979,326,848 x 0.515625 = 3,598,715,406 B, weights 5,700,061,710 B = 5.309 GiB (was 8.03e9 x 0.515625
    = 3.856 GiB); + KV 0.5 GiB + 1 GiB + 5 % x 5.309 = 7.074 GiB, past 80 % of an 8 GiB card (6.4): tight.
    8-bit: 6,979,326,848 + 2,101,346,304 = 9,080,673,152 B = 8.457 GiB; + 0.5 + 1 + 0.423 = 10.380 GiB."""
    eight_b = MODELS["7-8B"]
    assert weights_bytes(eight_b, "4-bit") == pytest.approx(5_700_061_710)
    assert weights_bytes(eight_b, "8-bit") == pytest.approx(9_080_673_152)
    assert total_bytes(eight_b, "4-bit", 4096) / GIB == pytest.approx(7.074, abs=0.001)
    assert total_bytes(eight_b, "8-bit", 4096) / GIB == pytest.approx(10.380, abs=0.001)
    # a tied lm_head is the embedding: Llama-3.2-1B keeps 128,256 x 2,048 = 262,668,288 parameters at 2 bytes
    one_b = MODELS["1B"]
    assert weights_bytes(one_b, "4-bit") == pytest.approx((1.24e9 - 262_668_288) * 0.515625 + 262_668_288 * 2)
    report = json.loads(CliRunner().invoke(cli, ["doctor", "--vram", "8", "--json"], catch_exceptions=False).stdout)
    eight_gib = {row["size"]: row for row in report["fit"]}["7-8B"]
    assert (eight_gib["need_gib"]["4-bit"], eight_gib["verdict"]["4-bit"]) == (7.1, "tight")  # was 5.5, "fits"
    # the largest that fits: Llama-3.2-3B at 8-bit, (3.21e9 - 394,002,432) x 1 + 394,002,432 x 2 = 3.357 GiB
    # + KV 2 x 28 x 8 x 128 x 4096 x 2 = 0.4375 GiB + 1 + 0.168 = 4.96 GiB
    assert report["recommendation"] == "3B (e.g. Llama-3.2-3B) at quantization = 8bit: 5.0 GiB"


@pytest.mark.parametrize(
    ("need", "free", "total", "expected"),
    [
        (60, 79, 80, "fits"),  # under 80 % of 80 and under what is free
        (64, 79, 80, "fits"),  # exactly at the limit
        (70, 79, 80, "tight"),  # free, but past the 80 % SLO
        (70, 60, 80, "no"),  # more than is free
        (10, 8, 80, "no"),
    ],
)
def test_verdicts(need, free, total, expected):
    assert verdict(need, free, total, 0.8) == expected


class RecordedNvml:
    """nvidia-ml-py's functions answering with given readings (by default, an H100 80GB on driver 550)."""

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

    def nvmlDeviceGetUUID(self, handle):  # noqa: N802
        return handle["uuid"]

    def nvmlDeviceGetPciInfo(self, handle):  # noqa: N802
        return SimpleNamespace(busId=handle["bus"])

    def nvmlDeviceGetMemoryInfo(self, handle):  # noqa: N802
        if handle.get("unified"):
            raise self.NVMLError_NotSupported("Not Supported")
        return SimpleNamespace(total=handle["total"], free=handle["free"], used=handle["total"] - handle["free"])


H100 = {
    "name": "NVIDIA H100 80GB HBM3",
    "cc": (9, 0),
    "total": 85_520_809_984,
    "free": 84_987_478_016,
    "uuid": "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6",
    "bus": "00000000:18:00.0",
}


def test_an_h100_read_through_nvml_and_its_fit_table():
    nvml = RecordedNvml([H100])
    machine = probe(nvml, environ={})
    assert nvml.shut and machine.nvml_error is None
    assert (machine.driver, machine.cuda_driver) == ("550.54.15", "12.4")
    [gpu] = machine.gpus
    assert (gpu.name, gpu.compute_capability, gpu.bf16, gpu.integrated) == (
        "NVIDIA H100 80GB HBM3",
        (9, 0),
        True,
        False,
    )
    machine.torch = "2.5.1+cu124"  # this test is about the GPU, not about the torch installed here
    report = doctor_report(machine, 4096, 0.8)
    by_size = {row["size"]: row for row in report["fit"]}
    assert by_size["70B"]["verdict"] == {"fp16": "no", "8-bit": "tight", "4-bit": "fits"}
    assert by_size["34B"]["verdict"]["fp16"] == "tight" and by_size["13B"]["verdict"]["fp16"] == "fits"
    assert report["recommendation"] == "70B (e.g. Llama-3.1-70B) at quantization = 4bit: 40.9 GiB"
    assert (report["fit_for"], report["fit_device"]) == ("GPU 0 (device = cuda:0)", "cuda:0")
    text = to_text(report)
    assert "GPU 0     NVIDIA H100 80GB HBM3 · discrete · 79.6 GiB total" in text and "bf16 yes" in text
    assert "          device = cuda:0 · PCI 00000000:18:00.0 · GPU-8932f937-d72c-4106-c12f-20bd9faed9f6" in text
    assert "CUDA      CUDA_VISIBLE_DEVICES unset · CUDA_DEVICE_ORDER unset (fastest first)" in text
    assert "70B   Llama-3.1-70B" in text


def test_a_board_without_its_own_vram_is_integrated_and_uses_system_memory():
    machine = probe(
        RecordedNvml(
            [
                {
                    "name": "NVIDIA GB10",
                    "cc": (12, 1),
                    "unified": True,
                    "uuid": "GPU-0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6",
                    "bus": "0000000F:01:00.0",
                }
            ]
        )
    )
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
    assert lines[0] == (
        "GPU       none found: no NVIDIA driver / NVML (nvidia-ml-py is not installed: pip install 'trayllm[gpu]')"
    )
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
    34B 4-bit: embedding and lm_head 2 x 32,000 x 8,192 = 524,288,000 at 2 B + the other 33,175,712,000 x
    (0.5 + 1/64) B = 16.908 GiB + KV 0.75 GiB + 1 + 0.845 = 19.503 -> tight (it was 18.742, "fits");
    13B 8-bit: 2 x 32,000 x 5,120 = 327,680,000 at 2 B + 12,672,320,000 x 1 B = 12.412 GiB + 3.125 + 1 + 0.621
    = 17.158 -> fits, the largest."""
    result = CliRunner().invoke(cli, ["doctor", "--vram", "24", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    fit = {row["size"]: row for row in report["fit"]}
    assert (fit["7-8B"]["need_gib"]["fp16"], fit["7-8B"]["verdict"]["fp16"]) == (17.2, "fits")
    assert (fit["13B"]["need_gib"]["fp16"], fit["13B"]["verdict"]["fp16"]) == (29.6, "no")
    assert (fit["34B"]["need_gib"]["4-bit"], fit["34B"]["verdict"]["4-bit"]) == (19.5, "tight")
    assert report["recommendation"] == "13B (e.g. Llama-2-13B) at quantization = 8bit: 17.2 GiB"
    assert report["fit_for"] == "a 24 GiB GPU (planned, all of it free)"
    text = CliRunner().invoke(cli, ["doctor", "--vram", "24"]).stdout
    assert "What fits on a 24 GiB GPU (planned, all of it free) with a 4096-token context" in text
    bad = CliRunner().invoke(cli, ["doctor", "--vram", "0"])
    assert bad.exit_code == 2 and "Invalid value for '--vram'" in bad.stderr


def test_bf16_is_the_engines_rule(monkeypatch: pytest.MonkeyPatch):
    """A T4 (7.5) emulates bf16 (torch.cuda.is_bf16_supported() says yes), an A10 (8.6) has its tensor cores; and
    the doctor asks trayllm.cuda_facts, the engine's rule, so moving that rule moves the doctor's answer too."""
    t4, a10 = (
        Gpu(i, name, f"GPU-{i}", f"00000000:0{i}:00.0", 16 * GIB, 15 * GIB, cc, False)
        for i, name, cc in ((0, "Tesla T4", (7, 5)), (1, "NVIDIA A10", (8, 6)))
    )
    assert (t4.bf16, a10.bf16) == (False, True)
    monkeypatch.setattr(trayllm.cuda_facts, "BF16_FROM_CAPABILITY", (9, 0))
    assert a10.bf16 is False


RTX4090 = {
    "name": "NVIDIA GeForce RTX 4090",
    "cc": (8, 9),
    "total": 25_757_220_864,
    "free": 25_217_466_368,
    "uuid": "GPU-5b3c6f0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
    "bus": "00000000:41:00.0",
}
RTX3060 = {
    "name": "NVIDIA GeForce RTX 3060",
    "cc": (8, 6),
    "total": 12_884_901_888,
    "free": 12_348_030_976,
    "uuid": "GPU-a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    "bus": "00000000:01:00.0",
}


def two_gpus(**environ: str) -> dict:
    """NVML lists the 4090 first; its PCI bus id (0x41) comes after the 3060's (0x01)."""
    machine = probe(RecordedNvml([RTX4090, RTX3060]), environ=environ)
    machine.torch = "2.5.1+cu124"
    return json.loads(json.dumps(doctor_report(machine, 4096, 0.8)))  # what --json prints


def test_in_pci_bus_order_nvmls_gpu_0_is_cuda_1():
    report = two_gpus(CUDA_DEVICE_ORDER="PCI_BUS_ID")
    gpus = report["machine"]["gpus"]
    assert [(g["index"], g["pci_bus_id"], g["uuid"], g["cuda_visible"], g["cuda_device"]) for g in gpus] == [
        (0, "00000000:41:00.0", RTX4090["uuid"], True, "cuda:1"),
        (1, "00000000:01:00.0", RTX3060["uuid"], True, "cuda:0"),
    ]
    assert (report["fit_gpu"], report["fit_device"], report["fit_for"]) == (0, "cuda:1", "GPU 0 (device = cuda:1)")
    text = to_text(report)
    assert "          device = cuda:1 · PCI 00000000:41:00.0 · GPU-5b3c6f0e" in text
    assert "CUDA      CUDA_VISIBLE_DEVICES unset · CUDA_DEVICE_ORDER PCI_BUS_ID, as in this shell" in text


def test_the_fit_is_for_the_best_gpu_the_daemon_sees():
    """CUDA_VISIBLE_DEVICES=0 under PCI_BUS_ID leaves the daemon the 3060 (first on the bus), NVML's GPU 1: the
    table is for its 11.5 GiB free, not for the 4090 it cannot use."""
    report = two_gpus(CUDA_DEVICE_ORDER="PCI_BUS_ID", CUDA_VISIBLE_DEVICES="0")
    assert [(g["cuda_visible"], g["cuda_device"]) for g in report["machine"]["gpus"]] == [
        (False, None),
        (True, "cuda:0"),
    ]
    assert (report["fit_gpu"], report["fit_device"]) == (1, "cuda:0")
    assert {row["size"]: row for row in report["fit"]}["7-8B"]["verdict"]["fp16"] == "no"  # 17.2 GiB > 11.5 free
    text = to_text(report)
    assert "          hidden by CUDA_VISIBLE_DEVICES · PCI 00000000:41:00.0" in text
    assert "What fits on GPU 1 (device = cuda:0) with a 4096-token context" in text


def test_fastest_first_across_models_says_it_cannot_tell_cuda_n():
    report = two_gpus()
    assert [(g["cuda_visible"], g["cuda_device"]) for g in report["machine"]["gpus"]] == [(True, None), (True, None)]
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in report["machine"]["cuda_note"]
    assert (report["fit_gpu"], report["fit_device"]) == (0, None)
    text = to_text(report)
    assert text.count("device = cuda:? (CUDA's order)") == 2
    assert f"          {report['machine']['cuda_note']}" in text
    assert "What fits on GPU 0 (its cuda:N depends on CUDA's order)" in text


def test_a_gpu_named_by_uuid_is_exact_in_any_order():
    report = two_gpus(CUDA_VISIBLE_DEVICES="GPU-a1b2c3d4")
    assert [(g["cuda_visible"], g["cuda_device"]) for g in report["machine"]["gpus"]] == [
        (False, None),
        (True, "cuda:0"),
    ]
    assert report["machine"]["cuda_note"] is None and report["fit_device"] == "cuda:0"


def test_an_integer_under_fastest_first_across_models_leaves_visibility_unknown():
    report = two_gpus(CUDA_VISIBLE_DEVICES="0")
    assert [g["cuda_visible"] for g in report["machine"]["gpus"]] == [None, None]
    assert "name them by UUID" in report["machine"]["cuda_note"]
    assert report["fit_for"] == "GPU 0 (if the daemon sees it)"
    assert "device = cuda:? (see CUDA below)" in to_text(report)


def test_when_every_gpu_is_hidden_the_daemon_runs_on_the_cpu():
    report = two_gpus(CUDA_VISIBLE_DEVICES="")
    assert [g["cuda_visible"] for g in report["machine"]["gpus"]] == [False, False]
    assert report["fit"] == [] and "fit_gpu" not in report
    assert report["recommendation"].startswith("CUDA_VISIBLE_DEVICES='' hides every GPU: trayllm runs on the CPU.")
    assert "CUDA      CUDA_VISIBLE_DEVICES '' · " in to_text(report)
