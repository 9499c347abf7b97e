"""VRAM admission's arithmetic, by hand: KV growth per GPU, the prefill's activations, what the driver says."""

from __future__ import annotations

from transformers import LlamaConfig, LlamaForCausalLM

from trayllm.engine.admission import Growth, ModelShape, admits, model_shape, prefill_activation_bytes
from trayllm.engine.device_memory import GpuReading

SHAPE = ModelShape(kv_bytes_per_token=100, activation_bytes_per_token=10, element_bytes=2)


def gpu(total: int, in_use: int = 0, reclaimable: int = 0, share: float = 1.0, index: int = 0) -> GpuReading:
    return GpuReading(index, in_use, reclaimable, total, share)


def test_growth_is_the_worst_case_of_a_left_padded_batch() -> None:
    # 2 running rows, 30 columns wide, one may still write 50 tokens; a newcomer of 40 tokens, max_tokens 20.
    # Afterwards: 3 rows x (40 + 50) = 270 columns x rows, of which 2 x 30 = 60 are held already.
    growth = Growth(
        running_rows=2, running_width=30, running_remaining=50, newcomer_prompts=(40,), newcomer_max_tokens=20
    )
    assert growth.kv_tokens == 210
    assert growth.prefill_tokens == 40


def test_the_prefill_of_several_newcomers_is_padded_to_the_longest() -> None:
    growth = Growth(0, 0, 0, newcomer_prompts=(10, 30), newcomer_max_tokens=5)
    assert growth.prefill_tokens == 60
    assert prefill_activation_bytes(SHAPE, growth) == 60 * 10 + 2 * 30 * 30 * 2  # activations + the mask


def test_a_request_is_admitted_exactly_up_to_the_limit() -> None:
    growth = Growth(0, 0, 0, newcomer_prompts=(10,), newcomer_max_tokens=10)
    need = 20 * 100 + 10 * 10 + 10 * 10 * 2  # KV 2,000 + activations 100 + mask 200 = 2,300
    assert admits([gpu(total=10_000, in_use=8_000 - need)], SHAPE, growth, 0.8)
    assert not admits([gpu(total=10_000, in_use=8_000 - need + 1)], SHAPE, growth, 0.8)


def test_memory_our_allocator_holds_unused_counts_as_room() -> None:
    growth = Growth(0, 0, 0, newcomer_prompts=(10,), newcomer_max_tokens=10)
    assert not admits([gpu(total=10_000, in_use=7_000)], SHAPE, growth, 0.8)
    assert admits([gpu(total=10_000, in_use=7_000, reclaimable=2_000)], SHAPE, growth, 0.8)


def test_the_prefill_activations_can_be_what_does_not_fit() -> None:
    long_prompt = Growth(0, 0, 0, newcomer_prompts=(1_000,), newcomer_max_tokens=1)
    cache_only = 1_001 * 100
    assert cache_only <= 0.8 * 200_000  # the KV cache alone would fit ...
    assert not admits([gpu(total=200_000)], SHAPE, long_prompt, 0.8)  # ... with a 2 MB attention mask it cannot


def test_each_gpu_is_checked_with_its_own_share_of_the_cache() -> None:
    growth = Growth(0, 0, 0, newcomer_prompts=(10,), newcomer_max_tokens=90)  # KV 10,000 in all
    roomy, full = gpu(10**9, share=0.25, index=0), gpu(10_000, in_use=1_000, share=0.75, index=1)
    assert not admits([roomy, full], SHAPE, growth, 0.8)  # GPU 1: 1,000 + 7,500 + 300 > 8,000
    assert admits([roomy, gpu(10_000, in_use=100, share=0.75, index=1)], SHAPE, growth, 0.8)


def test_the_model_shape_comes_from_the_config() -> None:
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=40,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    shape = model_shape(LlamaForCausalLM(config), kv_bytes_per_token=64)
    assert shape == ModelShape(64, (6 * 16 + 3 * 40) * 4, 4)
