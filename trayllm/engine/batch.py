"""The running batch: left-padded rows sharing one KV cache, which rows can join and leave between steps.

This is step-level continuous batching on top of transformers' DynamicCache (or the native model's cache of the
same layout, engine/native_model.py). Newcomers are
prefilled together, then merged into the running batch by left-padding whichever side is
shorter; finished rows are dropped with an index select; padding columns no row needs any
more are trimmed. Each row's positions come from its own attention mask, so a row's tokens
see exactly the positions they would have seen alone. Per-row tables (the tokens each row has seen,
and how often each row's reply holds each token) follow their rows through every join and leave.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

import torch

from trayllm.engine.native_model import NativeCache, NativeLlama

if TYPE_CHECKING:  # imported only where a transformers model runs: the native CPU path never loads transformers
    from transformers import DynamicCache, PreTrainedModel

    Model = PreTrainedModel | NativeLlama
    Cache = DynamicCache | NativeCache

Row = TypeVar("Row")


class _KeyValueLayer(Protocol):
    """A plain cache layer: one keys and one values tensor, [batch, heads, columns, head dim]. transformers types
    ``cache.layers`` as a union that includes layers without them (linear attention); this module only handles
    plain ones (``RunningBatch.mergeable`` says whether a batch has only those)."""

    keys: torch.Tensor
    values: torch.Tensor

    def batch_select_indices(self, indices: torch.Tensor) -> None: ...


def _layers(cache: Cache) -> list[_KeyValueLayer]:
    return cast("list[_KeyValueLayer]", cache.layers)


@dataclass
class StepOutput:
    """Last-position logits for each row, in the batch's row order."""

    logits: torch.Tensor


class RunningBatch(Generic[Row]):
    """Rows (any per-request object) aligned with the cache's batch dimension."""

    def __init__(
        self,
        rows: list[Row],
        cache: Cache,
        mask: torch.Tensor,
        seen: torch.Tensor,
        counts: torch.Tensor | None = None,
    ) -> None:
        self.rows = rows
        self.cache = cache
        self.mask = mask  # [B, L] long: 1 where the cache column holds a real token of that row
        self.seen = seen  # [B, V] bool: tokens in each row's context, for the repetition penalty
        # [B, V] int32: how often each row has fed each token since its prompt (its reply so far), for the
        # frequency and presence penalties; None while no row needs it, so a batch without them pays nothing.
        self.counts = counts

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def mergeable(self) -> bool:
        """Plain (non-sliding) cache layers can be padded and concatenated; others cannot."""
        if isinstance(self.cache, NativeCache):
            return True
        from transformers.cache_utils import DynamicLayer

        return all(type(layer) is DynamicLayer for layer in self.cache.layers)

    def keep(self, indices: Sequence[int]) -> None:
        """Keep only the rows at ``indices`` (in that order), then trim padding no row needs.

        With device_map="auto" the cache's layers are spread over several GPUs, none of them necessarily
        the mask's, and a tensor takes an index only from its own device (plain indexing also from the
        CPU). So the index is built on the host and copied once to each device that needs it.
        """
        if list(indices) == list(range(len(self.rows))):
            return
        on_host = torch.tensor(list(indices), dtype=torch.long)
        index_on = functools.cache(functools.partial(on_host.to, non_blocking=True))
        self.rows = [self.rows[i] for i in indices]
        self.mask = self.mask.index_select(0, index_on(self.mask.device))
        self.seen = self.seen.index_select(0, index_on(self.seen.device))
        if self.counts is not None:
            self.counts = self.counts.index_select(0, index_on(self.counts.device))
        if self.rows:
            for layer in _layers(self.cache):
                keys = getattr(layer, "keys", None)
                layer.batch_select_indices(index_on(keys.device) if isinstance(keys, torch.Tensor) else on_host)
            self._trim()

    def stop_counting(self) -> None:
        """Drop the reply-token counts: the caller has no row left that is penalised by them. A row that joins
        later starts its own count at zero, which is all it has generated."""
        self.counts = None

    def _trim(self) -> None:
        used = self.mask.any(dim=0)
        first = int(used.to(torch.long).argmax()) if bool(used.any()) else self.mask.shape[1]
        if first == 0:
            return
        self.mask = self.mask[:, first:]
        for layer in _layers(self.cache):
            layer.keys = layer.keys[:, :, first:, :]
            layer.values = layer.values[:, :, first:, :]

    def absorb(self, other: RunningBatch[Row]) -> None:
        """Append ``other``'s rows, left-padding the shorter cache so columns line up. When only one side counts
        reply tokens, the other side's rows get zeros: nothing penalises them by their counts, which stay unread."""
        if not self.rows:
            self.rows, self.cache, self.mask, self.seen = other.rows, other.cache, other.mask, other.seen
            self.counts = other.counts
            return
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(_layers(self.cache), _layers(other.cache), strict=True):
            mine.keys = torch.cat([_pad_left(mine.keys, width, 2), _pad_left(theirs.keys, width, 2)], dim=0)
            mine.values = torch.cat([_pad_left(mine.values, width, 2), _pad_left(theirs.values, width, 2)], dim=0)
        self.mask = torch.cat([_pad_left(self.mask, width, 1), _pad_left(other.mask, width, 1)], dim=0)
        if self.counts is not None or other.counts is not None:  # before the seen tables: zeros take their shape
            self.counts = torch.cat([_counts_of(self), _counts_of(other)], dim=0)
        self.seen = torch.cat([self.seen, other.seen], dim=0)
        self.rows = self.rows + other.rows

    def step(self, model: Model, next_tokens: Sequence[int]) -> StepOutput:
        """Feed one token per row and return the logits for the token after it."""
        # Copied without blocking: a blocking host-to-GPU copy would wait for all the queued work first.
        ids = torch.tensor(next_tokens, dtype=torch.long).to(self.mask.device, non_blocking=True).unsqueeze(1)
        positions = self.mask.sum(dim=1, keepdim=True)
        self.mask = torch.cat([self.mask, torch.ones_like(ids)], dim=1)
        self.seen.scatter_(1, ids, True)
        if self.counts is not None:  # every token fed after the prompt is one the row generated
            self.counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=torch.int32))
        out = model(
            input_ids=ids,
            attention_mask=self.mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **cache_argument(model, self.cache),
        )
        return StepOutput(logits=out.logits[:, -1, :])


def prefill(
    model: Model,
    rows: list[Row],
    prompts: list[list[int]],
    pad_id: int,
    device: torch.device,
    *,
    count_replies: bool = False,
) -> tuple[RunningBatch[Row], StepOutput]:
    """Run the prompts of newcomers through the model together, left-padded to one length; with
    ``count_replies`` (a newcomer has a frequency or presence penalty) their reply-token counts start, at zero."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(prompts), width), dtype=torch.long, device=device)
    for i, prompt in enumerate(prompts):
        ids[i, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long, device=device)
        mask[i, width - len(prompt) :] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    cache = new_cache(model)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        **cache_argument(model, cache),
    )
    logits = out.logits[:, -1, :]
    seen = torch.zeros((len(prompts), logits.shape[-1]), dtype=torch.bool, device=device)
    for i, prompt in enumerate(prompts):
        seen[i, torch.tensor(prompt, dtype=torch.long, device=device)] = True
    counts = torch.zeros(seen.shape, dtype=torch.int32, device=device) if count_replies else None
    return RunningBatch(list(rows), cache, mask, seen, counts), StepOutput(logits=logits)


def new_cache(model: Model) -> Cache:
    """An empty cache of the kind ``model`` fills."""
    if isinstance(model, NativeLlama):
        return model.new_cache()
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def cache_argument(model: Model, cache: Cache) -> dict[str, Any]:
    """The keyword argument that hands ``cache`` to this model's forward.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns, and goes in 5.40);
    the releases before take only the old name. Asking the forward's signature, rather than the
    version, also covers an architecture that has not been converted yet.
    """
    model_type: Any = type(model)  # a class is hashable, whatever PreTrainedModel's __hash__ says of instances
    return {_cache_keyword(model_type): cache}


@functools.cache
def _cache_keyword(model_type: Any) -> str:  # a PreTrainedModel subclass (its class is what the cache keys on)
    parameters = inspect.signature(model_type.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _counts_of(batch: RunningBatch[Any]) -> torch.Tensor:
    """``batch``'s reply-token counts, or zeros beside its seen table when it keeps none."""
    if batch.counts is not None:
        return batch.counts
    return torch.zeros(batch.seen.shape, dtype=torch.int32, device=batch.seen.device)


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([torch.zeros(shape, dtype=tensor.dtype, device=tensor.device), tensor], dim=dim)
