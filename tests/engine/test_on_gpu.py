"""The CUDA paths on a real GPU: precision choice, batching, peaks, a real OOM, quantized loads, a lost device.

Skipped without a CUDA GPU (``make test`` runs on machines without one). The model is a random-initialised
Llama of SmolLM2-135M's shape with SmolLM2's real tokenizer, saved as a Hugging Face directory, so the real
loading path runs; speed and memory do not depend on the weights' values. The tokenizer comes from the
converted embedded model, or from ``TRAYLLM_TEST_TOKENIZER_DIR`` where that is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from scheduling import PROMPT, greedy, run

from trayllm.bench.random_model import build
from trayllm.config import Settings, load_settings
from trayllm.cuda_facts import has_bf16_tensor_cores
from trayllm.engine.handle import RequestHandle
from trayllm.engine.models import LoadedModel, load_model
from trayllm.engine.sampling import pick_tokens, row_generator
from trayllm.engine.scheduler import Scheduler
from trayllm.engine.types import OomReport, SamplingParams
from trayllm.errors import EngineOutOfMemory

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

MIB = 2**20


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    given = os.environ.get("TRAYLLM_TEST_TOKENIZER_DIR")
    source = Path(given) if given else request.getfixturevalue("converted_model_dir")
    return build(tmp_path_factory.mktemp("random-smollm2-135m"), source)


def settings_for(model_dir: Path, **overrides: object) -> Settings:
    return load_settings({"model": str(model_dir), "warmup": False, **overrides}, environ={})


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> LoadedModel:
    return load_model(settings_for(model_dir))


@pytest.fixture
def scheduler(loaded: LoadedModel, model_dir: Path) -> Iterator[Scheduler]:
    made = Scheduler(loaded, settings_for(model_dir, max_batch=16))
    made.start()
    yield made
    made.stop()


def test_the_load_picks_this_gpus_precision_and_names_the_device_nvml_knows(loaded: LoadedModel) -> None:
    capability = torch.cuda.get_device_capability(loaded.device)
    assert loaded.info.dtype == ("bf16" if has_bf16_tensor_cores(capability) else "fp16")
    assert loaded.info.device == f"cuda:{loaded.device.index}" and loaded.info.memory_total_bytes
    import pynvml

    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByUUID(loaded.info.device_uuid)
        name = pynvml.nvmlDeviceGetName(handle)
    finally:
        pynvml.nvmlShutdown()
    assert (name.decode() if isinstance(name, bytes) else name) == torch.cuda.get_device_name(loaded.device)


def test_a_batch_of_staggered_requests_runs_and_each_gets_its_peak(scheduler: Scheduler, loaded: LoadedModel) -> None:
    handles = [RequestHandle(f"r{i}") for i in range(12)]
    for i, handle in enumerate(handles):
        params = SamplingParams(
            max_tokens=4 + 3 * i,
            temperature=0.7 if i % 2 else 0.0,
            top_p=0.9,
            repetition_penalty=1.1 if i % 3 == 0 else 1.0,
            seed=i,
        )
        scheduler.submit(handle, "u", PROMPT, params)
    weights = loaded.model.get_memory_footprint()
    for i, handle in enumerate(handles):
        _, fin = run(handle, timeout=120)
        assert fin.reason == "length" and fin.completion_tokens == 4 + 3 * i  # rows left one by one
        assert weights < fin.vram_peak_bytes < fin.vram_total_bytes == loaded.info.memory_total_bytes


def test_a_real_oom_fails_that_pass_frees_its_memory_and_serving_goes_on(loaded: LoadedModel, model_dir: Path) -> None:
    reports: list[OomReport] = []
    scheduler = Scheduler(loaded, settings_for(model_dir, max_batch=8))
    scheduler.on_oom = reports.append
    scheduler.start()
    device = loaded.device
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    headroom = torch.cuda.memory_allocated(device) + 256 * MIB
    torch.cuda.set_per_process_memory_fraction(headroom / total, device)
    try:
        long_prompt = (PROMPT * 700)[:4000]  # 8 x 4,000 tokens: a GiB of attention mask alone
        doomed = [RequestHandle(f"long{i}") for i in range(8)]
        for handle in doomed:
            scheduler.submit(handle, "u", long_prompt, greedy(4))
        failed = [run(handle, timeout=120)[1] for handle in doomed]
        small = RequestHandle("small")
        scheduler.submit(small, "u", PROMPT, greedy(4))
        _, after = run(small, timeout=120)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        scheduler.stop()
    assert all(isinstance(f.error, EngineOutOfMemory) for f in failed)
    assert reports and reports[0].phase == "prefill"
    report = reports[0]
    assert report.reserved_bytes - report.allocated_bytes < 64 * MIB  # the failed pass's blocks went back
    assert after.reason == "length"
    assert after.vram_peak_bytes < max(f.vram_peak_bytes for f in failed)  # not charged the failed pass's peak
    print(
        f"\nOOM: failed pass peak {max(f.vram_peak_bytes for f in failed) / MIB:.0f} MiB, "
        f"after release allocated {report.allocated_bytes / MIB:.0f} MiB reserved {report.reserved_bytes / MIB:.0f}"
        f" MiB, next request peak {after.vram_peak_bytes / MIB:.0f} MiB"
    )


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantized_loads_generate_in_less_memory(model_dir: Path, loaded: LoadedModel, quantization: str) -> None:
    pytest.importorskip("bitsandbytes")
    quantized = load_model(settings_for(model_dir, quantization=quantization))
    try:
        assert quantized.info.version.endswith(f"-{quantization}")
        assert quantized.model.get_memory_footprint() < 0.8 * loaded.model.get_memory_footprint()
        if quantization == "4bit":  # nf4 computes in the precision this GPU was given
            compute = quantized.model.config.quantization_config.bnb_4bit_compute_dtype
            assert compute == {"bf16": torch.bfloat16, "fp16": torch.float16}[loaded.info.dtype]
        scheduler = Scheduler(quantized, settings_for(model_dir, quantization=quantization))
        scheduler.start()
        handle = RequestHandle(quantization)
        scheduler.submit(handle, "u", PROMPT, greedy(8))
        _, fin = run(handle, timeout=120)
        scheduler.stop()
        assert fin.reason == "length" and fin.completion_tokens == 8
        print(
            f"\n{quantization}: weights {quantized.model.get_memory_footprint() / MIB:.0f} MiB "
            f"(bf16 {loaded.model.get_memory_footprint() / MIB:.0f} MiB), peak {fin.vram_peak_bytes / MIB:.0f} MiB"
        )
    finally:
        del quantized
        torch.cuda.empty_cache()


def test_a_nan_row_fails_alone_and_leaves_the_gpu_working() -> None:
    device = torch.device("cuda")
    logits = torch.randn(3, 49152, device=device)
    logits[1, 7] = float("nan")
    params = [SamplingParams(4, 0.8, 0.9, 1.0, seed=s) for s in range(3)]
    picks = pick_tokens(
        logits,
        torch.zeros(3, 49152, dtype=torch.bool, device=device),
        params,
        [row_generator(p, device) for p in params],
    )
    assert isinstance(picks[1], Exception) and all(isinstance(picks[i], int) for i in (0, 2))
    assert torch.ones(1, device=device).add_(1).item() == 2.0  # no device-side assert poisoned the context


LOSE_THE_GPU = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, "tests")
    from scheduling import PROMPT, greedy, run
    from trayllm.config import load_settings
    from trayllm.engine.handle import RequestHandle
    from trayllm.engine.models import load_model
    from trayllm.engine.scheduler import Scheduler

    settings = load_settings({"model": sys.argv[1], "warmup": False}, environ={})
    loaded = load_model(settings)
    def illegal_access(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        index = torch.tensor([10**12], device=hidden.device)
        hidden.view(-1)[index] = 0  # out of bounds on the GPU: a device-side assert, sticky for the process
    loaded.model.model.layers[0].register_forward_pre_hook(illegal_access, with_kwargs=True)
    fatal = []
    scheduler = Scheduler(loaded, settings)
    scheduler.on_fatal = fatal.append
    scheduler.start()
    handle = RequestHandle("doomed")
    scheduler.submit(handle, "u", PROMPT, greedy(4))
    _, fin = run(handle, timeout=120)
    print(json.dumps({"fatal": fatal, "error": type(fin.error).__name__, "message": fin.error.message}))
""")


def test_a_sticky_cuda_error_is_fatal_not_ready(model_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "lose_the_gpu.py"
    script.write_text(LOSE_THE_GPU)
    done = subprocess.run(
        [sys.executable, str(script), str(model_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["error"] == "EngineFailure" and "restarting" in outcome["message"]
    assert outcome["fatal"] and "stopped working" in outcome["fatal"][0]


def test_the_doctor_knows_this_gpu_by_the_uuid_the_engine_records(loaded: LoadedModel) -> None:
    from trayllm.doctor.gpus import probe

    machine = probe()
    [gpu] = [g for g in machine.gpus if g.uuid == loaded.info.device_uuid]
    assert gpu.bf16 == has_bf16_tensor_cores(torch.cuda.get_device_capability(loaded.device))


def test_the_daemon_on_a_gpu_records_each_requests_vram(model_dir: Path, tmp_path: Path) -> None:
    from daemons import spawn_daemon

    daemon = spawn_daemon(tmp_path / "home", model=model_dir)
    try:
        with daemon.client() as http:
            for max_tokens in (4, 16, 64):
                reply = http.post(
                    "/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": max_tokens},
                )
                assert reply.status_code == 200
    finally:
        assert daemon.stop() == 0
    records = [json.loads(line) for line in daemon.records.read_text().splitlines()]
    assert len(records) == 3
    for record in records:
        vram = record["llm"]["vram"]
        assert 0 < vram["peak"]["bytes"] < vram["total"]["bytes"] and 0 < vram["peak"]["pct"] < 1
        assert vram["nvml"]["used"]["bytes"] > 0 and 0 < vram["nvml"]["pct"] < 1
        assert record["llm"]["model"]["device"].startswith("cuda:")
    print(
        f"\ndaemon records: peak {[r['llm']['vram']['peak']['bytes'] // MIB for r in records]} MiB, "
        f"NVML used {[r['llm']['vram']['nvml']['used']['bytes'] // MIB for r in records]} MiB"
    )
