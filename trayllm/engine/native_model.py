"""A Llama-architecture causal LM in plain torch: the CPU path that needs no transformers.

Importing transformers' model classes takes about two seconds (torch._dynamo, torch.distributed.tensor and
sympy come with them) on a start that should be ready in three, and their forward pass spends a fifth of a
single-stream decode step in Python around the matrix products. A Llama decoder is small enough to write
out: this one loads the same safetensors under the same parameter names (so the int8 layers and their cache
are the same as on the transformers path), takes the same forward arguments and returns the same logits
(tests/engine/test_native_model.py compares them), and keeps its KV cache in layers that batch.py joins,
trims and selects exactly as transformers' DynamicCache layers.

Only what ``NativeConfig.of`` accepts is served this way (the Llama family as SmolLM2, TinyLlama and Llama
2/3 without rope scaling); anything else, and every CUDA model, goes through transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trayllm.engine.safetensors_read import read_into

ARCHITECTURE = "LlamaForCausalLM"


@dataclass(frozen=True)
class NativeConfig:
    """The fields of a Llama config.json this model reads (transformers' names, so admission and the KV-cache
    arithmetic read it as they read a transformers config)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool

    def get_text_config(self) -> NativeConfig:
        return self

    @classmethod
    def of(cls, config: dict[str, Any]) -> NativeConfig | None:
        """The config, or None when it asks for anything this model does not implement."""
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
        if (
            config.get("architectures") != [ARCHITECTURE]
            or config.get("model_type", "llama") != "llama"
            or rope_type != "default"
            or config.get("hidden_act", "silu") != "silu"
            or config.get("attention_bias", False)
            or config.get("mlp_bias", False)
            or config.get("pretraining_tp", 1) != 1
        ):
            return None
        heads = int(config["num_attention_heads"])
        return cls(
            hidden_size=int(config["hidden_size"]),
            intermediate_size=int(config["intermediate_size"]),
            num_hidden_layers=int(config["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or int(config["hidden_size"]) // heads),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=float(theta),
            vocab_size=int(config["vocab_size"]),
            max_position_embeddings=int(config.get("max_position_embeddings") or 2048),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        )


@dataclass
class GenerationConfig:
    eos_token_id: int | list[int] | None = None


class KeyValueLayer:
    """One layer's cache: keys and values [batch, KV heads, columns, head dim], the attributes batch.py moves."""

    def __init__(self) -> None:
        self.keys = torch.empty(0)
        self.values = torch.empty(0)

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys.numel():
            keys = torch.cat([self.keys, keys], dim=2)
            values = torch.cat([self.values, values], dim=2)
        self.keys, self.values = keys, values
        return keys, values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.keys = self.keys.index_select(0, indices)
        self.values = self.values.index_select(0, indices)


class NativeCache:
    def __init__(self, layers: int) -> None:
        self.layers = [KeyValueLayer() for _ in range(layers)]


@dataclass
class CausalLMOutput:
    logits: torch.Tensor  # [batch, kept positions, vocab]


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in fp32 and back, as transformers' LlamaRMSNorm: the same numbers in bf16
        wide = x.float()
        wide = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * wide.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: NativeConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
        )
        self.widths = [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim]
        self.qkv_proj = nn.Linear(config.hidden_size, sum(self.widths), bias=False)  # q, k and v in one product
        self.o_proj = nn.Linear(self.heads * self.head_dim, config.hidden_size, bias=False)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor, cache: KeyValueLayer
    ) -> torch.Tensor:
        batch, width, _ = x.shape
        q, k, v = self.qkv_proj(x).split(self.widths, dim=-1)
        q = q.reshape(batch, width, self.heads, self.head_dim).transpose(1, 2)
        k = k.reshape(batch, width, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.reshape(batch, width, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        k, v = cache.append(_rotate(k, cos, sin), v)
        out = F.scaled_dot_product_attention(_rotate(q, cos, sin), k, v, attn_mask=mask, enable_gqa=True)
        return self.o_proj(out.transpose(1, 2).reshape(batch, width, self.heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, config: NativeConfig) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)  # one product
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, config: NativeConfig) -> None:
        super().__init__()
        self.self_attn = Attention(config)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor, cache: KeyValueLayer
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    def __init__(self, config: NativeConfig) -> None:
        super().__init__()
        # given its weight: Embedding's own initialisation (normal_) would import torch._dynamo, 1.5 s of a start
        self.embed_tokens = nn.Embedding(
            config.vocab_size, config.hidden_size, _weight=torch.empty(config.vocab_size, config.hidden_size)
        )
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class NativeLlama(nn.Module):
    """LlamaForCausalLM's forward as the engine calls it (batch.py): ids, a [batch, columns] mask over the cache
    and the new tokens, each new token's position, the cache to extend, and how many last positions to keep."""

    inverse_frequencies: torch.Tensor

    def __init__(self, config: NativeConfig, generation_config: GenerationConfig) -> None:
        super().__init__()
        self.config = config
        self.generation_config = generation_config
        self.model = Decoder(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.register_buffer("inverse_frequencies", _inverse_frequencies(config), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    def new_cache(self) -> NativeCache:
        return NativeCache(self.config.num_hidden_layers)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: NativeCache | None = None,
        use_cache: bool = True,
        logits_to_keep: int = 0,
    ) -> CausalLMOutput:
        """Without a mask, positions or a cache (a whole text scored at once), every token is real, positions
        count from 0 and the cache is a fresh one."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if position_ids is None:
            position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]
        if past_key_values is None:
            past_key_values = self.new_cache()
        x = self.model.embed_tokens(input_ids)
        rope = self._rope(position_ids, x.dtype)
        mask = _attention_mask(attention_mask, input_ids.shape[1])
        for layer, cached in zip(self.model.layers, past_key_values.layers, strict=True):
            x = layer(x, rope, mask, cached)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        return CausalLMOutput(logits=self.lm_head(self.model.norm(x)))

    def _rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [batch, 1, width, head dim] of each token's own position."""
        angles = positions[..., None].float() * self.inverse_frequencies
        both = torch.cat((angles, angles), dim=-1)
        return both.cos().to(dtype)[:, None], both.sin().to(dtype)[:, None]


def _inverse_frequencies(config: NativeConfig) -> torch.Tensor:
    """RoPE's frequencies, computed as transformers computes them (an int64 arange, then float): the same angles
    to the last bit."""
    dim = config.head_dim  # on the CPU by name: the model is built on the meta device, and this is no weight
    return 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float() / dim))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _attention_mask(columns: torch.Tensor, width: int) -> torch.Tensor:
    """[batch, 1, width, columns] bool: a new token sees the real tokens of its row up to itself. A padding
    position also sees itself, so that no query row is empty: SDPA gives NaN for one, and a NaN in a padding
    position's values would reach real tokens through their zero attention weights."""
    total = columns.shape[1]
    causal = torch.ones(width, total, dtype=torch.bool, device=columns.device).tril(total - width)
    itself = torch.zeros(width, total, dtype=torch.bool, device=columns.device)
    itself[:, total - width :] = torch.eye(width, dtype=torch.bool, device=columns.device)
    return (columns.bool()[:, None, None, :] & causal) | itself


def native_config(directory: Path) -> NativeConfig | None:
    """The directory's config when this model can serve it, else None (transformers will)."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return NativeConfig.of(config) if isinstance(config, dict) else None


def load_native(directory: Path, config: NativeConfig, dtype: torch.dtype, weight_files: list[Path]) -> NativeLlama:
    """The model with the directory's weights in ``dtype``, each tensor read straight into its place; a missing or
    unexpected tensor is a ValueError, never a silently random layer."""
    with torch.device("meta"):
        model = NativeLlama(config, _generation_config(directory)).to(dtype)
    model.to_empty(device="cpu")  # allocated, not written: every byte is about to be read in
    model.inverse_frequencies = _inverse_frequencies(config)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    targets = _checkpoint_targets(model)
    read: set[str] = set()
    for file in weight_files:
        read |= read_into(file, targets)
    missing = set(targets) - read - ({"lm_head.weight"} if config.tie_word_embeddings else set())
    if missing:
        raise ValueError(f"weights do not match a Llama model: missing {sorted(missing)[:3]}")
    return model.eval()


def _checkpoint_targets(model: NativeLlama) -> dict[str, torch.Tensor]:
    """Where each tensor of a transformers Llama checkpoint goes: its own parameter, or its rows of a fused one
    (q, k and v stacked in qkv_proj, gate and up in gate_up_proj: a decode step multiplies by each matrix once
    per layer, and on a CPU one larger product is faster than three small ones). A tied checkpoint that still
    holds lm_head reads it into the embedding it equals."""
    decoder = model.model
    head = decoder.embed_tokens.weight if model.config.tie_word_embeddings else model.lm_head.weight
    targets = {
        "model.embed_tokens.weight": decoder.embed_tokens.weight,
        "model.norm.weight": decoder.norm.weight,
        "lm_head.weight": head,
    }
    for i, layer in enumerate(decoder.layers):
        assert isinstance(layer, DecoderLayer)
        attention, mlp = layer.self_attn, layer.mlp
        q, k, v = attention.qkv_proj.weight.split(attention.widths)
        gate, up = mlp.gate_up_proj.weight.chunk(2)
        parts = {
            "self_attn.q_proj": q,
            "self_attn.k_proj": k,
            "self_attn.v_proj": v,
            "self_attn.o_proj": attention.o_proj.weight,
            "mlp.gate_proj": gate,
            "mlp.up_proj": up,
            "mlp.down_proj": mlp.down_proj.weight,
            "input_layernorm": layer.input_layernorm.weight,
            "post_attention_layernorm": layer.post_attention_layernorm.weight,
        }
        targets.update({f"model.layers.{i}.{name}.weight": tensor for name, tensor in parts.items()})
    return targets


def _generation_config(directory: Path) -> GenerationConfig:
    try:
        data = json.loads((directory / "generation_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return GenerationConfig()
    return GenerationConfig(eos_token_id=data.get("eos_token_id") if isinstance(data, dict) else None)
