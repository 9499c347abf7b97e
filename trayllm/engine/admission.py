"""VRAM admission: whether a waiting request may join the batch without taking a GPU past ``vram_limit``.

Pure arithmetic over readings, so every case can be checked by hand. A request joins when, on every GPU the
model lives on,

    in use now - reclaimable + that GPU's share of the KV-cache growth + the newcomers' prefill activations
        <= vram_limit x that GPU's memory

- *in use now* is the driver's figure (other processes and the CUDA context count: they are what an OOM
  runs into); *reclaimable* is what our allocator holds but no tensor uses, which the cache can grow into.
- *KV-cache growth*: the batch grown to its worst case with the newcomers in it. A left-padded batch is as
  wide as its widest row, and every row may grow by the most tokens any row may still generate; the cache
  already held is in *in use*, so only the growth is added.
- *Prefill activations*: the newcomers' prompts go through the model together, and one layer's activations
  for all their tokens are alive at once (plus the attention mask), on whichever GPU runs that layer.

A request that would run alone is always admitted by the scheduler: nothing else can make room for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trayllm.engine.device_memory import GpuReading

if TYPE_CHECKING:  # the native CPU path never imports transformers
    from transformers import PreTrainedModel

    from trayllm.engine.native_model import NativeLlama


@dataclass(frozen=True)
class ModelShape:
    """The sizes admission multiplies by, read once from the loaded model's config."""

    kv_bytes_per_token: int  # K and V, every layer, one token of one row
    activation_bytes_per_token: int  # one layer's live activations for one prompt token during prefill
    element_bytes: int  # the compute dtype's size (the attention mask is one per pair of positions)


@dataclass(frozen=True)
class Growth:
    """The batch as it would be with the newcomers in it."""

    running_rows: int
    running_width: int  # the running batch's cache columns now
    running_remaining: int  # the most tokens any running row may still generate (0 with none running)
    newcomer_prompts: tuple[int, ...]  # prompt lengths of every newcomer, the candidate included
    newcomer_max_tokens: int  # the largest max_tokens among them

    @property
    def kv_tokens(self) -> int:
        """Cache columns x rows the batch can grow by, over what it holds now."""
        rows = self.running_rows + len(self.newcomer_prompts)
        widest = max(self.running_width, *self.newcomer_prompts)
        remaining = max(self.running_remaining, self.newcomer_max_tokens)
        return rows * (widest + remaining) - self.running_rows * self.running_width

    @property
    def prefill_tokens(self) -> int:
        """Positions of the newcomers' left-padded prefill."""
        return len(self.newcomer_prompts) * max(self.newcomer_prompts)


def prefill_activation_bytes(shape: ModelShape, growth: Growth) -> int:
    """One layer's activations for the newcomers' prefill, plus its rows x width x width attention mask."""
    width = max(growth.newcomer_prompts)
    mask = len(growth.newcomer_prompts) * width * width * shape.element_bytes
    return growth.prefill_tokens * shape.activation_bytes_per_token + mask


def admits(readings: list[GpuReading], shape: ModelShape, growth: Growth, limit: float) -> bool:
    """Whether every GPU stays within ``limit`` of its memory with the newcomers in the batch."""
    activations = prefill_activation_bytes(shape, growth)
    cache = growth.kv_tokens * shape.kv_bytes_per_token
    return all(r.in_use - r.reclaimable + cache * r.kv_share + activations <= limit * r.total for r in readings)


def model_shape(model: PreTrainedModel | NativeLlama, kv_bytes_per_token: int) -> ModelShape:
    """Read the sizes from ``model``'s config.

    A decoder layer's live activations per token, roughly: six hidden-wide tensors (the residual stream, its
    norm, queries, keys and values, the attention output) and three intermediate-wide ones (the MLP's gate,
    up projection and their product). An estimate meant to be a little high, never low.
    """
    config = model.config
    config = getattr(config, "get_text_config", lambda: config)()
    hidden = int(config.hidden_size)
    intermediate = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    element = model.dtype.itemsize if model.dtype.is_floating_point else 2
    return ModelShape(kv_bytes_per_token, (6 * hidden + 3 * intermediate) * element, element)
