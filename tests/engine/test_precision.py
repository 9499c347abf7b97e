"""Precision: how dtype and quantization resolve per device, and the CPU's int8 layers and their cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from trayllm.engine import precision
from trayllm.engine.batch import prefill
from trayllm.engine.precision import (
    DECODE_ROWS,
    DecodeInt8Linear,
    Int8Linear,
    Precision,
    int8_cache_file,
    quantize_int8,
    resolve_precision,
    resolve_quantization,
)
from trayllm.errors import ModelLoadError

CPU = torch.device("cpu")
GPU = torch.device("cuda", 0)  # only ever named, never touched: resolve_quantization asks no GPU anything
needs_int8 = pytest.mark.skipif(not precision.int8_kernel_available(), reason="torch has no int8 weight kernel")


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)


@pytest.fixture
def old_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)


# -- resolving the settings ----------------------------------------------------------------------


def test_auto_is_plain_bf16_on_a_cpu_with_bf16(bf16_cpu: None) -> None:
    assert resolve_precision("auto", "none", CPU) == Precision(torch.bfloat16, "none")
    assert Precision(torch.bfloat16, "none").label == "bf16"


@needs_int8
def test_int8_is_asked_for_and_named(bf16_cpu: None) -> None:
    assert resolve_precision("auto", "int8", CPU) == Precision(torch.bfloat16, "int8")
    assert Precision(torch.bfloat16, "int8").label == "bf16-int8"


def test_auto_is_plain_fp32_on_a_cpu_without_bf16(old_cpu: None) -> None:
    assert resolve_precision("auto", "none", CPU) == Precision(torch.float32, "none")
    assert Precision(torch.float32, "none").label == "fp32"


@needs_int8
def test_auto_quantization_is_int8_decode_on_the_cpu_and_none_on_a_gpu(bf16_cpu: None) -> None:
    assert resolve_precision("auto", "auto", CPU) == Precision(torch.bfloat16, "int8-decode")
    assert Precision(torch.bfloat16, "int8-decode").label == "bf16-int8-decode"
    assert resolve_quantization("auto", GPU) == "none"


def test_auto_quantization_is_none_where_torch_has_no_int8_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "int8_kernel_available", lambda: False)
    assert resolve_quantization("auto", CPU) == "none"
    with pytest.raises(ModelLoadError, match="int8-decode needs PyTorch"):
        resolve_quantization("int8-decode", CPU)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_an_explicit_dtype_is_kept(bf16_cpu: None, dtype: str) -> None:
    assert resolve_precision(dtype, "none", CPU) == Precision(getattr(torch, dtype), "none")


def test_int8_on_a_gpu_names_the_gpu_settings() -> None:
    with pytest.raises(ModelLoadError) as info:
        resolve_quantization("int8", GPU)
    assert "TRAYLLM_QUANTIZATION" in info.value.message
    assert "8bit" in info.value.message


@pytest.mark.parametrize("setting", ["4bit", "8bit"])
def test_bitsandbytes_on_a_cpu_names_the_cpu_settings(setting: str) -> None:
    with pytest.raises(ModelLoadError) as info:
        resolve_quantization(setting, CPU)
    assert setting in info.value.message
    assert "TRAYLLM_QUANTIZATION" in info.value.message and "int8" in info.value.message


@needs_int8
def test_explicit_int8_keeps_an_explicit_dtype(old_cpu: None) -> None:
    assert resolve_precision("float32", "int8", CPU) == Precision(torch.float32, "int8")


# -- the int8 layers -----------------------------------------------------------------------------


def tiny_llama(tied: bool = True, layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config).eval()


@needs_int8
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_linear_is_close_to_the_float_layer(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48, bias=True).to(dtype)
    x = torch.randn(3, 5, 64, dtype=dtype)
    with torch.no_grad():
        exact, approx = linear(x).float(), Int8Linear.quantize(linear)(x).float()
    assert approx.shape == exact.shape == (3, 5, 48)
    error = (approx - exact).norm() / exact.norm()
    assert error < (0.02 if dtype == torch.float32 else 0.04)


@needs_int8
def test_every_linear_layer_is_replaced_and_the_tied_embedding_kept(tmp_path: Path) -> None:
    model = tiny_llama(tied=True)
    embedding = model.get_input_embeddings().weight
    ids = torch.tensor([[5, 9, 13, 2, 7]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        quantize_int8(model, tmp_path / "int8.safetensors", progress=lambda _: None)
        after = model(input_ids=ids).logits
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert isinstance(model.lm_head, Int8Linear)
    assert model.get_input_embeddings().weight is embedding  # lookups still read the float table
    assert (after - before).norm() / before.norm() < 0.05
    assert torch.equal(after.argmax(-1), before.argmax(-1))


@needs_int8
def test_the_cache_is_written_once_and_read_back_exactly(tmp_path: Path) -> None:
    cache = tmp_path / "converted" / "int8.safetensors"
    said: list[str] = []
    first = tiny_llama()
    quantize_int8(first, cache, progress=said.append)
    assert cache.is_file() and len(said) == 1 and "int8" in said[0]
    second = tiny_llama()
    quantize_int8(second, cache, progress=pytest.fail)  # read, not quantized again
    read = [m for m in second.modules() if isinstance(m, Int8Linear)]
    assert read and all(b.data_ptr() % 64 == 0 for m in read for b in m.buffers())  # the kernel needs aligned data
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(first(input_ids=ids).logits, second(input_ids=ids).logits)
    assert list(cache.parent.iterdir()) == [cache]  # no temporary file left behind


@needs_int8
@pytest.mark.parametrize("content", [b"not safetensors", None])
def test_a_broken_or_foreign_cache_is_quantized_again(tmp_path: Path, content: bytes | None) -> None:
    cache = tmp_path / "int8.safetensors"
    if content is None:  # a valid file, for a model with other layers
        quantize_int8(tiny_llama(layers=1), cache, progress=lambda _: None)
    else:
        cache.write_bytes(content)
    said: list[str] = []
    model = tiny_llama()
    quantize_int8(model, cache, progress=said.append)
    assert said  # quantized afresh
    quantize_int8(tiny_llama(), cache, progress=pytest.fail)  # and the rewritten cache now fits


def test_the_cache_file_names_digest_dtype_and_layout(tmp_path: Path) -> None:
    path = int8_cache_file(tmp_path, "ab" * 32, torch.bfloat16, "native")
    assert path.parent == tmp_path / "converted"
    assert path.name.startswith("ab" * 12) and "bf16-int8-native" in path.name
    assert int8_cache_file(tmp_path, "ab" * 32, torch.bfloat16, "transformers") != path
    assert int8_cache_file(tmp_path, "ab" * 32, torch.float32, "native") != path


@needs_int8
def test_the_batched_path_runs_on_int8_layers_in_bf16(tmp_path: Path) -> None:
    """The scheduler's prefill and decode steps (KV cache in the model's dtype) on a quantized bf16 model."""
    model = tiny_llama().to(torch.bfloat16)
    quantize_int8(model, tmp_path / "int8.safetensors", progress=lambda _: None)
    with torch.no_grad():
        batch, out = prefill(model, ["a", "b"], [[3, 4, 5], [6, 7]], pad_id=0, device=CPU)
        step = batch.step(model, out.logits.argmax(-1).tolist())
    assert step.logits.shape == (2, 96) and bool(step.logits.isfinite().all())
    assert batch.cache.layers[0].keys.dtype == torch.bfloat16


@needs_int8
def test_int8_decode_runs_narrow_passes_on_int8_and_wide_ones_on_the_float_weights() -> None:
    torch.manual_seed(0)
    wide = torch.nn.Linear(64, 48, bias=False).to(torch.bfloat16)
    narrow = Int8Linear.quantize(wide)
    layer = DecodeInt8Linear(wide, narrow)
    with torch.no_grad():
        for rows in (1, DECODE_ROWS, DECODE_ROWS + 1, 40):
            x = torch.randn(rows, 1, 64, dtype=torch.bfloat16)  # a decode step of ``rows`` streams
            expected = narrow(x) if rows <= DECODE_ROWS else wide(x)
            assert torch.equal(layer(x), expected)
        prompt = torch.randn(1, 40, 64, dtype=torch.bfloat16)  # one stream's prefill: 40 rows, so wide
        assert torch.equal(layer(prompt), wide(prompt))
        assert not torch.equal(narrow(prompt), wide(prompt))  # the two paths do differ: the check can fail


@needs_int8
def test_keep_float_gives_every_linear_layer_both_weights_sharing_the_int8_cache(tmp_path: Path) -> None:
    cache = tmp_path / "int8.safetensors"
    quantize_int8(tiny_llama(tied=True), cache, progress=lambda _: None)
    model = tiny_llama(tied=True)
    embedding = model.get_input_embeddings().weight
    quantize_int8(model, cache, progress=pytest.fail, keep_float=True)  # the int8 layers are read, not redone
    layers = [m for m in model.modules() if isinstance(m, DecodeInt8Linear)]
    assert layers and isinstance(model.lm_head, DecodeInt8Linear)
    assert model.lm_head.wide.weight is embedding  # the tied head's float weight is still the embedding
    assert not any(isinstance(m, torch.nn.Linear) and m not in [x.wide for x in layers] for m in model.modules())
