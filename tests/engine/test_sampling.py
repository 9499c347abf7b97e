"""Repetition penalty, top-p filtering and per-row token picking, on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch

from trayllm.engine.sampling import (
    GREEDY_BELOW,
    TOP_CANDIDATES,
    apply_repetition_penalty,
    pick_tokens,
    row_generator,
    top_p_filter,
)
from trayllm.engine.types import SamplingParams
from trayllm.errors import InvalidRequest

CPU = torch.device("cpu")


def params(temperature: float = 1.0, top_p: float = 1.0, repetition_penalty: float = 1.0,
           seed: int | None = None) -> SamplingParams:
    return SamplingParams(max_tokens=16, temperature=temperature, top_p=top_p,
                          repetition_penalty=repetition_penalty, seed=seed)


def no_seen(rows: int, vocab: int) -> torch.Tensor:
    return torch.zeros((rows, vocab), dtype=torch.bool)


def log_probs(*probs: float) -> torch.Tensor:
    return torch.tensor([math.log(p) for p in probs])


# -- repetition penalty ------------------------------------------------------------------


def test_repetition_penalty_divides_positive_multiplies_negative_and_skips_unseen() -> None:
    logits = torch.tensor([[2.0, -2.0, 3.0, 0.0, -1.0],
                           [1.5, -1.0, 4.5, -4.0, 6.0]])
    seen = torch.tensor([[True, True, False, True, False],
                         [False, True, True, False, True]])
    penalty = torch.tensor([2.0, 1.5])
    out = apply_repetition_penalty(logits, seen, penalty)
    expected = torch.tensor([[1.0, -4.0, 3.0, 0.0, -1.0],
                             [1.5, -1.5, 3.0, -4.0, 4.0]])
    torch.testing.assert_close(out, expected)
    # the input is not modified in place
    assert logits[0, 0].item() == 2.0


def test_repetition_penalty_of_one_changes_nothing() -> None:
    logits = torch.tensor([[2.0, -2.0, 0.5]])
    out = apply_repetition_penalty(logits, torch.ones((1, 3), dtype=torch.bool), torch.tensor([1.0]))
    torch.testing.assert_close(out, logits)


# -- top-p ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("top_p", "expected"), [
    (0.5, [0.5, 0.0, 0.0, 0.0]),        # the first token alone reaches exactly 0.5
    (0.3, [0.5, 0.0, 0.0, 0.0]),        # the most likely token is always kept
    (0.6, [0.5, 0.25, 0.0, 0.0]),
    (0.75, [0.5, 0.25, 0.0, 0.0]),      # 0.5 + 0.25 reaches 0.75 exactly: no third token
    (0.8, [0.5, 0.25, 0.125, 0.0]),
    (0.999, [0.5, 0.25, 0.125, 0.125]),
])
def test_top_p_keeps_the_smallest_set_reaching_the_mass(top_p: float, expected: list[float]) -> None:
    probs = torch.tensor([0.5, 0.25, 0.125, 0.125])
    torch.testing.assert_close(top_p_filter(probs, top_p), torch.tensor(expected))


def test_top_p_puts_kept_tokens_back_in_vocabulary_order() -> None:
    probs = torch.tensor([0.0625, 0.25, 0.0625, 0.5, 0.125])
    out = top_p_filter(probs, 0.8)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.25, 0.0, 0.5, 0.125]))


def test_top_p_with_ties_keeps_exactly_one_of_the_tied_tokens() -> None:
    probs = torch.tensor([0.125, 0.5, 0.125, 0.25])
    out = top_p_filter(probs, 0.8)  # 0.5 + 0.25 = 0.75 < 0.8: one of the two 0.125s is needed, not both
    assert out[1].item() == 0.5 and out[3].item() == 0.25
    assert sorted([out[0].item(), out[2].item()]) == [0.0, 0.125]
    assert out.sum().item() == pytest.approx(0.875)


def test_top_p_with_all_tokens_tied() -> None:
    probs = torch.full((8,), 0.125)
    out = top_p_filter(probs, 0.5)  # four tokens reach 0.5
    assert int((out > 0).sum()) == 4
    assert out.sum().item() == pytest.approx(0.5)


def test_top_p_too_small_for_float32_still_keeps_the_top_token() -> None:
    probs = torch.tensor([0.125, 0.5, 0.25, 0.125])
    torch.testing.assert_close(top_p_filter(probs, 1e-300), torch.tensor([0.0, 0.5, 0.0, 0.0]))


def test_top_p_of_one_returns_the_input_untouched() -> None:
    probs = torch.tensor([0.7, 0.2, 0.1, 0.0])
    assert top_p_filter(probs, 1.0) is probs


# -- pick_tokens ---------------------------------------------------------------------------


def test_temperature_zero_is_argmax_per_row_while_other_rows_sample() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    logits[0, 17] = 10.0
    logits[2, 3] = 10.0
    rows = [params(temperature=0.0), params(temperature=1.0, seed=1), params(temperature=0.0)]
    for seed in range(20):
        gens = [row_generator(p, CPU) for p in rows]
        gens[1].manual_seed(seed)
        picked = pick_tokens(logits, no_seen(3, 50), rows, gens)
        assert picked[0] == 17 and picked[2] == 3
    # the sampled row does not always land on its argmax: it really samples
    sampled = {pick_tokens(logits, no_seen(3, 50), rows, [row_generator(p, CPU) for p in
                                                          (rows[0], params(seed=s), rows[2])])[1]
               for s in range(30)}
    assert len(sampled) > 1


def test_greedy_rows_see_the_repetition_penalty() -> None:
    logits = torch.tensor([[4.0, 3.0, -1.0], [4.0, 3.0, -1.0]])
    seen = torch.tensor([[True, False, False], [False, False, False]])
    rows = [params(temperature=0.0, repetition_penalty=2.0), params(temperature=0.0, repetition_penalty=2.0)]
    gens = [row_generator(p, CPU) for p in rows]
    # row 0: 4.0 seen -> 2.0 < 3.0, so token 1 wins; row 1 saw nothing and keeps token 0
    assert pick_tokens(logits, seen, rows, gens) == [1, 0]


def test_sampling_stays_inside_the_nucleus() -> None:
    logits = log_probs(0.5, 0.3, 0.15, 0.05).unsqueeze(0)
    only_top = params(top_p=0.5)
    assert {pick_tokens(logits, no_seen(1, 4), [only_top], [row_generator(params(seed=s), CPU)])[0]
            for s in range(50)} == {0}
    two = params(top_p=0.7)
    assert {pick_tokens(logits, no_seen(1, 4), [two], [row_generator(params(seed=s), CPU)])[0]
            for s in range(200)} == {0, 1}


def test_sampling_beyond_the_top_candidates_uses_the_full_nucleus() -> None:
    """A flat distribution: the top 256 candidates hold too little mass, so the full sort is used."""
    vocab = 1024
    logits = (-torch.arange(vocab, dtype=torch.float32) * 1e-3).unsqueeze(0)
    top_p = 0.6
    probs = torch.softmax(logits[0], dim=-1)
    assert float(probs[:TOP_CANDIDATES].sum()) < top_p
    nucleus = int((top_p_filter(probs, top_p) > 0).sum())  # tokens 0..nucleus-1, in this sorted case
    assert TOP_CANDIDATES < nucleus < vocab
    row = params(top_p=top_p, seed=3)
    gen = row_generator(row, CPU)
    picks = [pick_tokens(logits, no_seen(1, vocab), [row], [gen])[0] for _ in range(400)]
    assert max(picks) < nucleus
    assert any(p >= TOP_CANDIDATES for p in picks)


def test_same_seed_gives_the_same_sequence() -> None:
    torch.manual_seed(1)
    logits = torch.randn(1, 200)
    row = params(temperature=1.0, top_p=0.95, seed=7)

    def run(p: SamplingParams) -> list[int]:
        gen = row_generator(p, CPU)
        return [pick_tokens(logits, no_seen(1, 200), [p], [gen])[0] for _ in range(30)]

    first = run(row)
    assert run(row) == first
    assert run(params(temperature=1.0, top_p=0.95, seed=8)) != first


def test_unseeded_generators_differ() -> None:
    logits = torch.zeros(1, 1000)
    row = params(temperature=1.0)
    runs = []
    for _ in range(2):
        gen = row_generator(row, CPU)
        runs.append([pick_tokens(logits, no_seen(1, 1000), [row], [gen])[0] for _ in range(20)])
    assert runs[0] != runs[1]


@pytest.mark.parametrize("neighbour", [
    params(temperature=1.0, top_p=0.9, seed=8),
    params(temperature=0.0),
    params(temperature=0.7, top_p=1.0, repetition_penalty=1.3, seed=None),
])
def test_a_seeded_row_does_not_depend_on_the_rest_of_the_batch(neighbour: SamplingParams) -> None:
    torch.manual_seed(2)
    vocab = 300
    mine_logits = torch.randn(vocab) * 2
    other_logits = torch.randn(vocab) * 2
    seen_mine = torch.zeros(vocab, dtype=torch.bool)
    seen_mine[:20] = True
    seen_other = torch.rand(vocab) > 0.5
    mine = params(temperature=0.8, top_p=0.9, repetition_penalty=1.2, seed=7)

    def alone() -> list[int]:
        gen = row_generator(mine, CPU)
        return [pick_tokens(mine_logits.unsqueeze(0), seen_mine.unsqueeze(0), [mine], [gen])[0] for _ in range(40)]

    def batched(first: bool) -> list[int]:
        gens = [row_generator(mine, CPU), row_generator(neighbour, CPU)]
        rows, logits, seen = [mine, neighbour], [mine_logits, other_logits], [seen_mine, seen_other]
        if not first:
            gens, rows, logits, seen = gens[::-1], rows[::-1], logits[::-1], seen[::-1]
        at = 0 if first else 1
        return [pick_tokens(torch.stack(logits), torch.stack(seen), rows, gens)[at] for _ in range(40)]

    reference = alone()
    assert len(set(reference)) > 1  # the row really samples
    assert batched(first=True) == reference
    assert batched(first=False) == reference


@pytest.mark.parametrize("tiny", [{"temperature": 1e-300}, {"temperature": GREEDY_BELOW / 2}, {"top_p": 1e-300}])
def test_a_temperature_or_top_p_too_small_for_float32_picks_the_argmax(tiny: dict[str, float]) -> None:
    torch.manual_seed(3)
    logits = torch.randn(1, 500) * 3
    row = SamplingParams(**{**params(temperature=0.9, top_p=0.95).__dict__, **tiny})
    picks = {pick_tokens(logits, no_seen(1, 500), [row], [row_generator(params(seed=s), CPU)])[0] for s in range(20)}
    assert picks == {int(logits.argmax())}


def test_a_row_whose_probabilities_are_not_finite_gets_its_error_and_the_others_their_usual_tokens() -> None:
    torch.manual_seed(4)
    vocab = 300
    logits = torch.randn(4, vocab) * 2
    rows = [params(temperature=0.8, seed=1), params(temperature=0.7, seed=2), params(temperature=0.0),
            params(temperature=0.9, top_p=0.8, seed=3)]

    def picks(batch_logits: torch.Tensor) -> list[list[object]]:
        gens = [row_generator(p, CPU) for p in rows]
        return [pick_tokens(batch_logits, no_seen(4, vocab), rows, gens) for _ in range(10)]

    clean = picks(logits)
    poisoned_logits = logits.clone()
    poisoned_logits[1, 7] = float("nan")  # a broken row, between two seeded ones
    poisoned = picks(poisoned_logits)
    for step_clean, step_poisoned in zip(clean, poisoned, strict=True):
        assert isinstance(step_poisoned[1], ValueError) and "not a distribution" in str(step_poisoned[1])
        assert [step_poisoned[r] for r in (0, 2, 3)] == [step_clean[r] for r in (0, 2, 3)]


@pytest.mark.parametrize("seed", [2**80, 2**64, -2**63 - 1])
def test_a_seed_torch_cannot_take_is_the_requests_own_invalid_parameter(seed: int) -> None:
    with pytest.raises(InvalidRequest, match="seed") as raised:
        row_generator(params(seed=seed), CPU)
    assert raised.value.param == "seed"


def test_a_negative_seed_is_served_as_its_twos_complement() -> None:
    logits = torch.zeros(1, 1000)

    def draws(seed: int) -> list[object]:
        row = params(seed=seed)
        gen = row_generator(row, CPU)
        return [pick_tokens(logits, no_seen(1, 1000), [row], [gen])[0] for _ in range(10)]

    assert draws(-1) == draws(2**64 - 1) == draws(-1)
    assert draws(-1) != draws(1)
