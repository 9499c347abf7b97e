"""A random-initialised Llama of a chosen shape, saved with a real tokenizer, for measuring without downloads.

Speed and memory do not depend on the weights' values, so a model of the shape to measure (SmolLM2-135M's,
Llama-3.2-1B's) with SmolLM2's tokenizer files is enough to check batching, peaks and throughput on a GPU
that cannot reach a model hub. The reply text is noise; the end-of-text token is pushed down so that a reply
runs to ``max_tokens`` like a benchmark wants. A dev tool: imports torch, never used by the daemon.

    python -m trayllm.bench.random_model OUT --tokenizer DIR [--shape smollm2-135m|llama-1b]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json")
SHAPES: dict[str, dict[str, Any]] = {
    "smollm2-135m": {},  # the tokenizer directory's own config.json
    "llama-1b": {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
    },  # Llama-3.2-1B's, with this vocabulary
}


def build(out: Path, tokenizer_dir: Path, shape: str = "smollm2-135m", seed: int = 0) -> Path:
    """Write a bf16 model of ``shape`` plus ``tokenizer_dir``'s tokenizer files to ``out``; return ``out``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(tokenizer_dir, **SHAPES[shape])
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    torch.nn.Module.to(model, torch.bfloat16)  # transformers types its own .to() for devices only
    with torch.no_grad():
        model.lm_head.weight[config.eos_token_id] = 0.0  # a zero logit: noise never ends a reply on its own
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, out / name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tokenizer", type=Path, required=True, help="a directory with config.json and tokenizer")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    args = parser.parse_args()
    print(build(args.out, args.tokenizer, args.shape))


if __name__ == "__main__":
    main()
