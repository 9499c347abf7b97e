"""Pick the next token for every row of a batch, each row with its own settings and seed.

Rows share one logits tensor but not their randomness: each request owns a torch.Generator,
so a request with a seed gets the same reply whoever else is in the batch. Nor do they share
their failures: a row whose sampling raises gets its error back in place of a token, and the
other rows' picks (and their generators' draws) are exactly what they would have been.
"""

from __future__ import annotations

import math

import torch

from trayllm.engine.types import SamplingParams
from trayllm.errors import InvalidRequest

TOP_CANDIDATES = 256  # candidates checked before falling back to a full sort for top-p

GREEDY_BELOW = 1e-5
"""Temperatures under this are greedy (as in vLLM): dividing float32 logits by a temperature that small
overflows them to inf, and one that underflows float32 (1e-300) divides by zero; either makes NaN."""

Pick = int | Exception
"""One row's next token, or what its sampling raised (that row's failure alone)."""


def row_generator(params: SamplingParams, device: torch.device) -> torch.Generator:
    """The request's own generator: seeded from ``params.seed``, else from fresh entropy.

    torch takes seeds in -2**63 .. 2**64-1 (a negative seed is used as its two's complement);
    anything else is the request's own bad parameter, refused as such.
    """
    generator = torch.Generator(device=device)
    if params.seed is None:
        generator.seed()
        return generator
    try:
        generator.manual_seed(params.seed)
    except (ValueError, RuntimeError) as exc:
        raise InvalidRequest(f"seed must be an integer from -2**63 to 2**64-1, got {params.seed}",
                             param="seed") from exc
    return generator


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """CTRL-style penalty on tokens already in the context: shrink positive logits, grow negative ones.

    ``logits`` [B, V] float, ``seen`` [B, V] bool, ``penalty`` [B] float (1 = off).
    """
    p = penalty.unsqueeze(1)
    penalised = torch.where(logits > 0, logits / p, logits * p)
    return torch.where(seen, penalised, logits)


def _nucleus(sorted_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """``sorted_probs`` (descending, [V]) with every token after the smallest prefix reaching ``top_p`` zeroed.

    The first token is always kept: a ``top_p`` too small for float32 (1e-300 rounds to 0) would
    otherwise keep nothing, and sampling from nothing raises.
    """
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass strictly above each token
    keep = before < top_p
    keep[0] = True
    return torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the smallest set whose mass reaches ``top_p`` (one row, [V])."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = torch.sort(probs, descending=True)
    return torch.zeros_like(probs).scatter(-1, order, _nucleus(sorted_probs, top_p))


def _sample_row(probs: torch.Tensor, top_probs: torch.Tensor, top_ids: torch.Tensor, top_p: float,
                generator: torch.Generator) -> int:
    """Sample one row. The nucleus nearly always lies within the top candidates, so sorting all
    49k probabilities is only needed when their mass falls short of ``top_p``.

    Probabilities that are not finite are refused here, before ``torch.multinomial``: on CUDA it
    would fail with a device-side assert, which breaks the device for every request, not just this one.
    """
    top_mass = float(top_probs.sum())
    if not (math.isfinite(top_mass) and top_mass > 0.0):
        raise ValueError(f"the next-token probabilities are not a distribution (top mass {top_mass})")
    if top_p < 1.0 and top_mass >= top_p:
        return int(top_ids[torch.multinomial(_nucleus(top_probs, top_p), 1, generator=generator)].item())
    return int(torch.multinomial(top_p_filter(probs, top_p), 1, generator=generator).item())


def pick_tokens(logits: torch.Tensor, seen: torch.Tensor, params: list[SamplingParams],
                generators: list[torch.Generator]) -> list[Pick]:
    """Next token per row: greedy where temperature is below ``GREEDY_BELOW``, else temperature + top-p
    sampling. A row whose sampling raises gets the exception instead of a token; the others are unaffected."""
    logits = logits.float()
    penalty = torch.tensor([p.repetition_penalty for p in params], device=logits.device)
    if bool((penalty != 1.0).any()):
        logits = apply_repetition_penalty(logits, seen, penalty)
    picked: list[Pick] = [int(t) for t in logits.argmax(dim=-1).tolist()]
    sampled = [row for row, p in enumerate(params) if p.temperature >= GREEDY_BELOW]
    if not sampled:
        return picked
    index = torch.tensor(sampled, device=logits.device)
    temperature = torch.tensor([params[r].temperature for r in sampled], device=logits.device).unsqueeze(1)
    probs = torch.softmax(logits.index_select(0, index) / temperature, dim=-1)
    top_probs, top_ids = probs.topk(min(TOP_CANDIDATES, probs.shape[-1]), dim=-1)
    for j, row in enumerate(sampled):
        try:
            picked[row] = _sample_row(probs[j], top_probs[j], top_ids[j], params[row].top_p, generators[row])
        except Exception as exc:  # this row's own failure: the rows after it still get their draws
            picked[row] = exc
    return picked
