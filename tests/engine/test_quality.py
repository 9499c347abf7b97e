"""Quality guard: the CPU's fast paths against transformers' fp32: the default (bf16 with int8 copies for narrow
passes, int8-decode, on trayllm's own Llama), plain bf16, and quantization=int8 (bf16 with int8 linear layers).

On the real SmolLM2-135M, three measures, each with its threshold stated here:
- mean log-likelihood of a short reference text within DELTA_NATS nats/token of fp32's (measured for int8:
  +0.005);
- teacher-forced top-1 agreement on that text of at least AGREEMENT (the next token each model would pick
  at every position, given the same prefix; measured for int8: 0.97);
- the first GREEDY_TOKENS greedy tokens (through the scheduler's own prefill and decode steps) equal to fp32's
  on at least AGREEING_PROMPTS of the PROMPTS (measured for int8: 4 of 5).
A control run shows the measures tell a broken quantization apart: one layer's int8 weights scrambled fails them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from trayllm.config import load_settings
from trayllm.engine.batch import prefill
from trayllm.engine.models import LoadedModel, load_model
from trayllm.engine.native_model import NativeLlama
from trayllm.engine.precision import DecodeInt8Linear, Int8Linear, cpu_has_bf16, int8_kernel_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (cpu_has_bf16() and int8_kernel_available()), reason="the CPU fast path is off here"),
]

DELTA_NATS = 0.05
AGREEMENT = 0.9
GREEDY_TOKENS = 3
AGREEING_PROMPTS = 3
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a CPU does in one sentence.",
    "List three primary colors.",
    "How many legs does a spider have?",
]
REFERENCE = (
    "The sun rises in the east and sets in the west. Water boils at one hundred degrees Celsius at sea level. "
    "Cats and dogs are common pets, and many people keep fish or birds as well."
)


@dataclass
class Quality:
    log_likelihood: float  # mean nats per token of REFERENCE
    picks: torch.Tensor  # teacher-forced top-1 at each position of REFERENCE
    greedy: list[list[int]]  # the first GREEDY_TOKENS of each prompt's greedy reply


def measure(loaded: LoadedModel) -> Quality:
    tokenizer, model = loaded.tokenizer, loaded.model
    ids = torch.tensor([tokenizer(REFERENCE)["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float()
        log_probs = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])
        greedy = [greedy_tokens(loaded, prompt) for prompt in PROMPTS]
    return Quality(float(log_probs.mean()), logits.argmax(dim=-1), greedy)


def greedy_tokens(loaded: LoadedModel, prompt: str) -> list[int]:
    ids = loaded.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    ids = ids if isinstance(ids, list) else ids["input_ids"]
    batch, out = prefill(loaded.model, [prompt], [ids], int(loaded.tokenizer.pad_token_id), loaded.device)
    tokens = [int(out.logits.argmax(-1))]
    while len(tokens) < GREEDY_TOKENS:
        tokens.append(int(batch.step(loaded.model, [tokens[-1]]).logits.argmax(-1)))
    return tokens


def failures(reference: Quality, candidate: Quality) -> list[str]:
    """What in ``candidate`` falls outside the thresholds, measured against ``reference``."""
    out = []
    delta = candidate.log_likelihood - reference.log_likelihood
    if abs(delta) >= DELTA_NATS:
        out.append(f"log-likelihood differs by {delta:+.3f} nats/token")
    agreement = float((candidate.picks == reference.picks).float().mean())
    if agreement < AGREEMENT:
        out.append(f"teacher-forced agreement {agreement:.2f}")
    agreeing = sum(a == b for a, b in zip(reference.greedy, candidate.greedy, strict=True))
    if agreeing < AGREEING_PROMPTS:
        out.append(f"first {GREEDY_TOKENS} greedy tokens equal on {agreeing} of {len(PROMPTS)} prompts")
    return out


@pytest.fixture(scope="module")
def reference(converted_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Quality:
    cache = tmp_path_factory.mktemp("cache")
    fp32 = {
        "model": str(converted_model_dir),
        "cache_dir": str(cache),
        "dtype": "float32",
        "quantization": "none",
        "model_impl": "transformers",  # the reference: so the native model is measured against transformers too
    }
    return measure(load_model(load_settings(fp32, environ={})))


def load_fast(model_dir: Path, cache: Path, quantization: str) -> LoadedModel:
    settings = {"model": str(model_dir), "cache_dir": str(cache), "quantization": quantization}
    return load_model(load_settings(settings, environ={}))


@pytest.fixture(scope="module")
def fast(converted_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_fast(converted_model_dir, tmp_path_factory.mktemp("cache"), "int8")


def test_the_int8_path_is_bf16_with_int8_layers(fast: LoadedModel) -> None:
    assert (fast.info.dtype, fast.info.quantization) == ("bf16", "int8")
    assert fast.info.version.endswith("-bf16-int8")
    assert isinstance(fast.model.lm_head, Int8Linear)


def test_the_int8_path_keeps_fp32_quality(reference: Quality, fast: LoadedModel) -> None:
    assert failures(reference, measure(fast)) == []


def test_the_default_path_is_native_bf16_int8_decode_and_keeps_fp32_quality(
    reference: Quality, converted_model_dir: Path, tmp_path: Path
) -> None:
    default = load_fast(converted_model_dir, tmp_path, "auto")
    assert (default.info.dtype, default.info.quantization) == ("bf16", "int8-decode")
    assert default.info.version.endswith("-bf16-int8-decode")
    assert isinstance(default.model, NativeLlama) and isinstance(default.model.lm_head, DecodeInt8Linear)
    assert failures(reference, measure(default)) == []


def test_plain_bf16_keeps_fp32_quality(reference: Quality, converted_model_dir: Path, tmp_path: Path) -> None:
    plain = load_fast(converted_model_dir, tmp_path, "none")
    assert (plain.info.dtype, plain.info.quantization, plain.info.version[-5:]) == ("bf16", "none", "-bf16")
    assert failures(reference, measure(plain)) == []


def test_the_guard_fails_a_broken_quantization(reference: Quality, fast: LoadedModel) -> None:
    """The control: the same measures on a model whose lm_head int8 weights are shuffled must fail."""
    head = fast.model.lm_head
    assert isinstance(head, Int8Linear)
    kept = head.weight.clone()
    try:
        generator = torch.Generator().manual_seed(0)
        head.weight.copy_(kept.flatten()[torch.randperm(kept.numel(), generator=generator)].view_as(kept))
        assert failures(reference, measure(fast))
    finally:
        head.weight.copy_(kept)
