"""trayllm's own Llama gives transformers' logits, through the batch's joins, leaves and left padding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from trayllm.engine.batch import prefill
from trayllm.engine.models import hf_weight_files
from trayllm.engine.native_model import NativeConfig, NativeLlama, load_native, native_config

torch.set_grad_enabled(False)

PROMPTS = [[5, 17, 3, 99, 42, 8, 1], [7, 7, 12], [64, 2, 31, 77, 90]]


def _save_tiny(directory: Path, *, tied: bool, kv_heads: int = 2, theta: float = 10000.0) -> LlamaForCausalLM:
    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=256,
        tie_word_embeddings=tied,
        rope_theta=theta,
        eos_token_id=3,
    )
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(directory)
    return model


def _native(directory: Path, dtype: torch.dtype = torch.float32) -> NativeLlama:
    config = native_config(directory)
    assert config is not None
    return load_native(directory, config, dtype, hf_weight_files(directory))


def _run(model: torch.nn.Module, steps: int = 6) -> list[torch.Tensor]:
    """Prefill three ragged prompts, decode greedily, drop the middle row halfway and let a newcomer join."""
    cpu = torch.device("cpu")
    batch, out = prefill(model, ["a", "b", "c"], PROMPTS, pad_id=0, device=cpu)  # type: ignore[arg-type]
    logits = out.logits
    seen = [logits]
    for step in range(steps):
        tokens = [int(t) for t in logits.argmax(-1)]
        if step == 3:
            batch.keep([0, 2])
            tokens = [tokens[0], tokens[2]]
            newcomer, first = prefill(model, ["d"], [[11, 13, 17, 19, 23, 29, 31, 37, 41]], 0, cpu)  # type: ignore[arg-type]
            batch.absorb(newcomer)
            seen.append(first.logits)
            tokens.append(int(first.logits.argmax(-1)[0]))
        logits = batch.step(model, tokens).logits  # type: ignore[arg-type]
        seen.append(logits)
    assert batch.rows == ["a", "c", "d"]
    return seen


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("kv_heads", [1, 4])
def test_the_native_model_gives_transformers_logits_through_joins_leaves_and_padding(
    tmp_path: Path, tied: bool, kv_heads: int
) -> None:
    reference = _save_tiny(tmp_path, tied=tied, kv_heads=kv_heads)
    native = _native(tmp_path)
    theirs, ours = _run(reference), _run(native)
    assert len(theirs) == len(ours)
    for expected, got in zip(theirs, ours, strict=True):
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_the_embedded_model_gives_the_same_logits_and_greedy_tokens(converted_model_dir: Path) -> None:
    """The real 135M model, fp32: a wrong rope, norm or GQA grouping shows at once in 30 layers."""
    reference = LlamaForCausalLM.from_pretrained(converted_model_dir, dtype=torch.float32).eval()
    native = _native(converted_model_dir)
    theirs, ours = _run(reference, steps=4), _run(native, steps=4)
    for expected, got in zip(theirs, ours, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
        assert got.argmax(-1).tolist() == expected.argmax(-1).tolist()


def test_bf16_follows_transformers_bf16_greedy_tokens(converted_model_dir: Path) -> None:
    reference = LlamaForCausalLM.from_pretrained(converted_model_dir, dtype=torch.bfloat16).eval()
    native = _native(converted_model_dir, torch.bfloat16)
    assert native.dtype == torch.bfloat16
    theirs, ours = _run(reference, steps=4), _run(native, steps=4)
    pairs = [(t.argmax(-1).tolist(), o.argmax(-1).tolist()) for t, o in zip(theirs, ours, strict=True)]
    agree = [a == b for t, o in pairs for a, b in zip(t, o, strict=True)]
    assert sum(agree) >= 0.9 * len(agree)


def _config(**changes: object) -> dict[str, object]:
    config: dict[str, object] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 128,
    }
    config.update(changes)
    return config


@pytest.mark.parametrize(
    "changes",
    [
        {"architectures": ["Qwen2ForCausalLM"]},
        {"model_type": "mistral"},
        {"rope_scaling": {"rope_type": "llama3", "factor": 8.0}},
        {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6}},
        {"attention_bias": True},
        {"mlp_bias": True},
        {"hidden_act": "gelu"},
        {"pretraining_tp": 2},
    ],
)
def test_configs_it_does_not_implement_are_left_to_transformers(changes: dict[str, object]) -> None:
    assert NativeConfig.of(_config()) is not None
    assert NativeConfig.of(_config(**changes)) is None


def test_rope_theta_is_read_from_either_place(tmp_path: Path) -> None:
    assert NativeConfig.of(_config(rope_theta=5e5)).rope_theta == 5e5  # type: ignore[union-attr]
    assert NativeConfig.of(_config(rope_parameters={"rope_type": "default", "rope_theta": 1e5})).rope_theta == 1e5  # type: ignore[union-attr]
    (tmp_path / "config.json").write_text("not json")
    assert native_config(tmp_path) is None


def test_weights_of_another_shape_of_model_are_refused_not_left_random(tmp_path: Path) -> None:
    _save_tiny(tmp_path, tied=True)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_hidden_layers"] = 3  # one layer more than the file holds
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="missing"):
        _native(tmp_path)
