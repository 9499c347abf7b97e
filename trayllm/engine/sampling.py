"""Pick the next token for every row of a batch, each row with its own settings and seed.

Rows share one logits tensor but not their randomness: each request owns a torch.Generator,
so a request with a seed gets the same reply whoever else is in the batch.
"""

from __future__ import annotations

import torch

from trayllm.engine.types import SamplingParams

TOP_CANDIDATES = 256  # candidates checked before falling back to a full sort for top-p


def row_generator(params: SamplingParams, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    if params.seed is not None:
        generator.manual_seed(params.seed)
    else:
        generator.seed()
    return generator


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """CTRL-style penalty on tokens already in the context: shrink positive logits, grow negative ones.

    ``logits`` [B, V] float, ``seen`` [B, V] bool, ``penalty`` [B] float (1 = off).
    """
    p = penalty.unsqueeze(1)
    penalised = torch.where(logits > 0, logits / p, logits * p)
    return torch.where(seen, penalised, logits)


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the smallest set whose mass reaches ``top_p`` (one row, [V])."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = torch.sort(probs, descending=True)
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass strictly above each token
    sorted_probs = torch.where(before < top_p, sorted_probs, torch.zeros_like(sorted_probs))
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


def _sample_row(probs: torch.Tensor, top_probs: torch.Tensor, top_ids: torch.Tensor, top_p: float,
                generator: torch.Generator) -> int:
    """Sample one row. The nucleus nearly always lies within the top candidates, so sorting all
    49k probabilities is only needed when their mass falls short of ``top_p``."""
    if top_p < 1.0 and float(top_probs.sum()) >= top_p:
        before = torch.cumsum(top_probs, dim=-1) - top_probs
        nucleus = torch.where(before < top_p, top_probs, torch.zeros_like(top_probs))
        return int(top_ids[torch.multinomial(nucleus, 1, generator=generator)].item())
    return int(torch.multinomial(top_p_filter(probs, top_p), 1, generator=generator).item())


def pick_tokens(logits: torch.Tensor, seen: torch.Tensor, params: list[SamplingParams],
                generators: list[torch.Generator]) -> list[int]:
    """Next token per row: greedy where temperature is 0, else temperature + top-p sampling."""
    logits = logits.float()
    penalty = torch.tensor([p.repetition_penalty for p in params], device=logits.device)
    if bool((penalty != 1.0).any()):
        logits = apply_repetition_penalty(logits, seen, penalty)
    picked = [int(t) for t in logits.argmax(dim=-1).tolist()]
    sampled = [row for row, p in enumerate(params) if p.temperature > 0.0]
    if not sampled:
        return picked
    index = torch.tensor(sampled, device=logits.device)
    temperature = torch.tensor([params[r].temperature for r in sampled], device=logits.device).unsqueeze(1)
    probs = torch.softmax(logits.index_select(0, index) / temperature, dim=-1)
    top_probs, top_ids = probs.topk(min(TOP_CANDIDATES, probs.shape[-1]), dim=-1)
    for j, row in enumerate(sampled):
        picked[row] = _sample_row(probs[j], top_probs[j], top_ids[j], params[row].top_p, generators[row])
    return picked
