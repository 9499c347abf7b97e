"""A tiny random Llama with the real SmolLM2 tokenizer, and schedulers on it.

The tiny model is a real LlamaForCausalLM (random weights), so the inference thread runs for real in
milliseconds; what it writes is noise, which is all the scheduler tests need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from trayllm.config import Settings, load_settings
from trayllm.engine.device_memory import DeviceMemory
from trayllm.engine.faults import FaultPlan
from trayllm.engine.models import LoadedModel
from trayllm.engine.scheduler import Scheduler
from trayllm.engine.types import ModelInfo


@pytest.fixture(scope="module")
def tokenizer(converted_model_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(converted_model_dir)


@pytest.fixture(scope="module")
def tiny(tokenizer: PreTrainedTokenizerBase) -> LoadedModel:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id] = 0.0  # noise never ends on its own
    info = ModelInfo(
        name="tiny",
        version="0-fp32",
        source="memory",
        device="cpu",
        dtype="fp32",
        quantization="none",
        context_length=4096,
    )
    return LoadedModel(model=model, tokenizer=tokenizer, info=info, device=torch.device("cpu"))


@pytest.fixture
def make_scheduler(tiny: LoadedModel) -> Iterator[Callable[..., Scheduler]]:
    made: list[Scheduler] = []

    def make(
        start: bool = True, faults: FaultPlan | None = None, memory: DeviceMemory | None = None, **overrides: object
    ) -> Scheduler:
        settings: Settings = load_settings({"warmup": False, **overrides}, environ={})
        scheduler = Scheduler(tiny, settings, faults=faults, memory=memory)
        made.append(scheduler)
        if start:
            scheduler.start()
        return scheduler

    yield make
    for scheduler in made:
        if scheduler._thread.is_alive():
            scheduler.stop()
