"""Which model sizes fit in a GPU's free memory, by a formula simple enough to check by hand.

    total    = weights + kv_cache + overhead
    weights  = (parameters - kept) × bytes per parameter + kept × 2
    kept     = vocabulary × hidden size, twice where the lm_head is not tied to the embedding (the embedding
               and the lm_head, which stay at 2 bytes; a tied lm_head is the embedding, counted once)
    bytes per parameter: fp16/bf16 2, 8-bit 1, 4-bit 0.5 + 1/64 (nf4 keeps one absmax byte per block of
               64 weights after double quantization)
    kv_cache = 2 (K and V) × layers × KV heads × head dim × context tokens × 2 bytes (an fp16 cache)
    overhead = 1 GiB (CUDA context and allocator slack) + 5 % of the weights (activations)

bitsandbytes quantizes only ``nn.Linear`` layers, at 4-bit and at 8-bit (LLM.int8) alike, and transformers keeps
the output head out of it: the embedding and an untied lm_head stay at 2 bytes a parameter. For Llama-3.1-8B
(vocabulary 128,256, hidden 4,096, untied) that is 1.05e9 parameters, 1.96 GiB, of its 5.31 GiB at 4-bit. The
norm weights also stay at 2 bytes but are under 0.01 % of the parameters, so the formula leaves them quantized.

A size *fits* when its total is at most ``limit`` (the VRAM SLO, 80 %) of the device's total memory and no
more than is free now; *tight* when it fits in what is free but passes the limit; otherwise it does not fit.
The reference architectures are the common open models of each size class (Llama 3.x, Llama 2 13B,
CodeLlama 34B), with the layer and KV-head counts that set the cache size and the vocabulary, hidden size and
embedding tying of their ``config.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GIB = 2**30
OVERHEAD_BYTES = 1 * GIB
ACTIVATION_SHARE = 0.05
BYTES_PER_PARAM = {"fp16": 2.0, "8-bit": 1.0, "4-bit": 0.5 + 1 / 64}
Verdict = Literal["fits", "tight", "no"]


@dataclass(frozen=True)
class Architecture:
    size: str
    example: str
    parameters: float
    layers: int
    kv_heads: int
    head_dim: int
    vocabulary: int
    hidden: int
    tied_embeddings: bool

    @property
    def unquantized_parameters(self) -> int:
        """The embedding, and the lm_head where it is a matrix of its own: bitsandbytes leaves them at 2 bytes."""
        return self.vocabulary * self.hidden * (1 if self.tied_embeddings else 2)


REFERENCE_MODELS: tuple[Architecture, ...] = (
    Architecture("1B", "Llama-3.2-1B", 1.24e9, 16, 8, 64, 128_256, 2048, tied_embeddings=True),
    Architecture("3B", "Llama-3.2-3B", 3.21e9, 28, 8, 128, 128_256, 3072, tied_embeddings=True),
    Architecture("7-8B", "Llama-3.1-8B", 8.03e9, 32, 8, 128, 128_256, 4096, tied_embeddings=False),
    Architecture("13B", "Llama-2-13B", 13.0e9, 40, 40, 128, 32_000, 5120, tied_embeddings=False),
    Architecture("34B", "CodeLlama-34B", 33.7e9, 48, 8, 128, 32_000, 8192, tied_embeddings=False),
    Architecture("70B", "Llama-3.1-70B", 70.6e9, 80, 8, 128, 128_256, 8192, tied_embeddings=False),
)


def weights_bytes(model: Architecture, precision: str) -> float:
    kept = model.unquantized_parameters
    return (model.parameters - kept) * BYTES_PER_PARAM[precision] + kept * BYTES_PER_PARAM["fp16"]


def kv_cache_bytes(model: Architecture, context: int) -> float:
    return 2 * model.layers * model.kv_heads * model.head_dim * context * 2


def total_bytes(model: Architecture, precision: str, context: int) -> float:
    return load_need(weights_bytes(model, precision)) + kv_cache_bytes(model, context)


def load_need(weights: float) -> float:
    """Device memory a model whose weights take ``weights`` bytes needs to load and serve, before its KV cache:
    the weights, the CUDA context and allocator slack, and activations (the engine's and `trayllm models`' rule)."""
    return weights + OVERHEAD_BYTES + ACTIVATION_SHARE * weights


def verdict(need: float, free: float, total: float, limit: float = 0.8) -> Verdict:
    if need <= min(free, limit * total):
        return "fits"
    return "tight" if need <= free else "no"


@dataclass(frozen=True)
class FitRow:
    size: str
    example: str
    need_gib: dict[str, float]  # precision -> GiB needed
    verdicts: dict[str, Verdict]


def fit_table(free_bytes: float, total_memory: float, context: int = 4096, limit: float = 0.8) -> list[FitRow]:
    """One row per reference size: GiB needed and the verdict at fp16, 8-bit and 4-bit."""
    rows = []
    for model in REFERENCE_MODELS:
        need = {p: total_bytes(model, p, context) for p in BYTES_PER_PARAM}
        rows.append(
            FitRow(
                model.size,
                model.example,
                {p: round(n / GIB, 1) for p, n in need.items()},
                {p: verdict(n, free_bytes, total_memory, limit) for p, n in need.items()},
            )
        )
    return rows


def recommendation(rows: list[FitRow]) -> str:
    """The largest size that fits, preferring fp16, then 8-bit, then 4-bit."""
    for row in reversed(rows):
        for precision, label in (
            ("fp16", "bf16/fp16"),
            ("8-bit", "quantization = 8bit"),
            ("4-bit", "quantization = 4bit"),
        ):
            if row.verdicts[precision] == "fits":
                return f"{row.size} (e.g. {row.example}) at {label}: {row.need_gib[precision]} GiB"
    return "nothing from 1B up fits within the VRAM limit: use the embedded SmolLM2-135M, or free GPU memory"
