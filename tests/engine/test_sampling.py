"""Repetition, frequency and presence penalties, top-p filtering and per-row token picking, on hand-made tensors."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from trayllm.engine.sampling import (
    GREEDY_BELOW,
    TOP_CANDIDATES,
    apply_output_penalties,
    apply_repetition_penalty,
    inverse_cdf,
    nucleus,
    pick_tokens,
    row_generator,
)
from trayllm.engine.types import SamplingParams
from trayllm.errors import InvalidRequest

CPU = torch.device("cpu")


def params(
    temperature: float = 1.0, top_p: float = 1.0, repetition_penalty: float = 1.0, seed: int | None = None
) -> SamplingParams:
    return SamplingParams(
        max_tokens=16, temperature=temperature, top_p=top_p, repetition_penalty=repetition_penalty, seed=seed
    )


def no_seen(rows: int, vocab: int) -> torch.Tensor:
    return torch.zeros((rows, vocab), dtype=torch.bool)


def log_probs(*probs: float) -> torch.Tensor:
    return torch.tensor([math.log(p) for p in probs])


# -- repetition penalty ------------------------------------------------------------------


def test_repetition_penalty_divides_positive_multiplies_negative_and_skips_unseen() -> None:
    logits = torch.tensor([[2.0, -2.0, 3.0, 0.0, -1.0], [1.5, -1.0, 4.5, -4.0, 6.0]])
    seen = torch.tensor([[True, True, False, True, False], [False, True, True, False, True]])
    penalty = torch.tensor([2.0, 1.5])
    out = apply_repetition_penalty(logits, seen, penalty)
    expected = torch.tensor([[1.0, -4.0, 3.0, 0.0, -1.0], [1.5, -1.5, 3.0, -4.0, 4.0]])
    torch.testing.assert_close(out, expected)
    # the input is not modified in place
    assert logits[0, 0].item() == 2.0


def test_repetition_penalty_keeps_zero_infinities_and_nan_as_they_are() -> None:
    logits = torch.tensor([[float("inf"), float("-inf"), 0.0, 3.0, -3.0, float("nan")]])
    out = apply_repetition_penalty(logits, torch.ones((1, 6), dtype=torch.bool), torch.tensor([2.0]))
    assert out[0, :5].tolist() == [float("inf"), float("-inf"), 0.0, 1.5, -6.0]
    assert math.isnan(out[0, 5].item())


def test_repetition_penalty_of_one_changes_nothing() -> None:
    logits = torch.tensor([[2.0, -2.0, 0.5]])
    out = apply_repetition_penalty(logits, torch.ones((1, 3), dtype=torch.bool), torch.tensor([1.0]))
    torch.testing.assert_close(out, logits)


# -- frequency and presence penalties -------------------------------------------------------


def reply_counts(replies: list[list[int]], vocab: int) -> torch.Tensor:
    """[B, V] int32: how often each row's reply holds each token, as the batch keeps them."""
    counts = torch.zeros((len(replies), vocab), dtype=torch.int32)
    for row, reply in enumerate(replies):
        for token in reply:
            counts[row, token] += 1
    return counts


def test_output_penalties_take_frequency_per_occurrence_and_presence_once_per_row() -> None:
    logits = torch.tensor([[1.0, 2.0, -1.0, 0.5], [3.0, 0.0, -2.0, 1.0]])
    counts = reply_counts([[1, 2, 1, 1], [0, 3, 0]], vocab=4)  # row 0: token 1 thrice, 2 once; row 1: 0 twice, 3 once
    out = apply_output_penalties(logits, counts, torch.tensor([0.5, -0.25]), torch.tensor([1.5, 2.0]))
    # row 0: 2.0 - 3 * 0.5 - 1.5 = -1.0;  -1.0 - 1 * 0.5 - 1.5 = -3.0;  tokens 0 and 3 never came: unchanged
    # row 1: 3.0 - 2 * -0.25 - 2.0 = 1.5;  1.0 - 1 * -0.25 - 2.0 = -0.75;  tokens 1 and 2 unchanged
    assert out.tolist() == [[1.0, -1.0, -3.0, 0.5], [1.5, 0.0, -2.0, -0.75]]
    assert logits[0, 1].item() == 2.0  # the input is not modified in place


def test_zero_output_penalties_leave_a_row_bit_for_bit_as_it_was() -> None:
    row = [float("inf"), float("-inf"), -0.0, 1e-40, float("nan"), 3.3, -7.1]
    logits = torch.tensor([row, row])
    counts = reply_counts([[0, 1, 2, 3, 4, 5, 6, 6], [2, 3, 5]], vocab=7)
    out = apply_output_penalties(logits, counts, torch.tensor([0.0, 1.0]), torch.tensor([0.0, -2.0]))
    assert torch.equal(out[0].view(torch.int32), logits[0].view(torch.int32))  # -0.0, the subnormal, NaN's bits
    assert out[1, 5].item() == pytest.approx(3.3 - 1.0 + 2.0)  # the row beside it was penalised


def test_each_row_is_picked_after_its_own_frequency_and_presence_penalties() -> None:
    logits = torch.tensor([[5.0, 4.0, 3.9, 0.0]] * 4)
    rows = [
        SamplingParams(16, 0.0, 1.0, 1.0, frequency_penalty=0.6),  # 5 - 2 * 0.6 = 3.8 < 4.0: token 1
        SamplingParams(16, 0.0, 1.0, 1.0, presence_penalty=1.05),  # 3.95 > 3.9 > 4 - 1.05: token 0 still
        SamplingParams(16, 0.0, 1.0, 1.0, presence_penalty=1.2),  # 3.8 and 2.8 < 3.9: token 2
        params(temperature=0.0),  # no penalty: its counts are not read
    ]
    counts = reply_counts([[0, 0], [0, 1], [0, 1], [0, 0, 0]], vocab=4)
    gens = [row_generator(p, CPU) for p in rows]
    assert pick_tokens(logits, no_seen(4, 4), rows, gens, counts) == [1, 0, 2, 0]


def test_the_prompt_is_not_counted_only_the_reply_is() -> None:
    """``seen`` (the prompt) is the repetition penalty's; a row whose reply is empty has nothing to penalise."""
    logits = torch.tensor([[5.0, 4.0]])
    row = [SamplingParams(16, 0.0, 1.0, 1.0, frequency_penalty=2.0, presence_penalty=2.0)]
    seen = torch.tensor([[True, False]])
    gens = [row_generator(row[0], CPU)]
    assert pick_tokens(logits, seen, row, gens, reply_counts([[]], vocab=2)) == [0]
    assert pick_tokens(logits, seen, row, gens, reply_counts([[0]], vocab=2)) == [1]


def test_a_batch_without_output_penalties_needs_no_counts_and_a_penalised_one_refuses_to_go_without() -> None:
    logits = torch.tensor([[5.0, 4.0]])
    assert pick_tokens(logits, no_seen(1, 2), [params(temperature=0.0)], [torch.Generator()]) == [0]
    with pytest.raises(ValueError, match="counts no reply tokens"):
        pick_tokens(
            logits, no_seen(1, 2), [SamplingParams(16, 0.0, 1.0, 1.0, presence_penalty=0.5)], [torch.Generator()]
        )


# -- top-p ---------------------------------------------------------------------------------


def nucleus_of(sorted_probs: list[float], top_p: float) -> list[float]:
    return nucleus(torch.tensor([sorted_probs]), torch.tensor([top_p]))[0].tolist()


@pytest.mark.parametrize(
    ("top_p", "expected"),
    [
        (0.5, [0.5, 0.0, 0.0, 0.0]),  # the first token alone reaches exactly 0.5
        (0.3, [0.5, 0.0, 0.0, 0.0]),  # the most likely token is always kept
        (0.6, [0.5, 0.25, 0.0, 0.0]),
        (0.75, [0.5, 0.25, 0.0, 0.0]),  # 0.5 + 0.25 reaches 0.75 exactly: no third token
        (0.8, [0.5, 0.25, 0.125, 0.0]),  # of the two tied 0.125s only the one needed
        (0.999, [0.5, 0.25, 0.125, 0.125]),
        (math.inf, [0.5, 0.25, 0.125, 0.125]),  # "keep all", as top_p >= 1 is passed
    ],
)
def test_top_p_keeps_the_smallest_prefix_reaching_the_mass(top_p: float, expected: list[float]) -> None:
    assert nucleus_of([0.5, 0.25, 0.125, 0.125], top_p) == expected


def test_top_p_with_all_tokens_tied() -> None:
    assert nucleus_of([0.125] * 8, 0.5) == [0.125] * 4 + [0.0] * 4  # four tokens reach 0.5


def test_top_p_too_small_for_float32_still_keeps_the_top_token() -> None:
    assert nucleus_of([0.5, 0.25, 0.125, 0.125], 1e-300) == [0.5, 0.0, 0.0, 0.0]


def test_top_p_applies_each_rows_own_mass() -> None:
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25]])
    out = nucleus(probs, torch.tensor([0.5, 0.6, math.inf]))
    assert out.tolist() == [[0.5, 0.0, 0.0], [0.5, 0.25, 0.0], [0.5, 0.25, 0.25]]


# -- inverse CDF ---------------------------------------------------------------------------


def test_inverse_cdf_maps_each_uniform_to_the_column_whose_share_holds_it() -> None:
    weights = torch.tensor([[0.25, 0.5, 0.25]] * 5)
    uniform = torch.tensor([0.0, 0.2, 0.3, 0.74, 0.8])
    assert inverse_cdf(weights, uniform).tolist() == [0, 0, 1, 1, 2]


def test_inverse_cdf_never_draws_a_zero_weight() -> None:
    just_below_one = 1.0 - 2.0**-24  # the largest float32 below 1: uniform * total rounds up to the total
    weights = torch.tensor([[0.0, 0.3, 0.7, 0.0], [0.1, 0.2, 0.3, 0.0], [1 / 3, 1 / 3, 1 / 3, 0.0]])
    out = inverse_cdf(weights, torch.tensor([0.0, just_below_one, just_below_one]))
    assert out.tolist() == [1, 2, 2]


def test_inverse_cdf_of_a_row_that_is_not_finite_stays_in_range() -> None:
    weights = torch.tensor([[float("nan")] * 4, [float("inf"), 1.0, 0.0, 0.0]])
    out = inverse_cdf(weights, torch.tensor([0.5, 0.5]))
    assert all(0 <= column < 4 for column in out.tolist())


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
    sampled = {
        pick_tokens(logits, no_seen(3, 50), rows, [row_generator(p, CPU) for p in (rows[0], params(seed=s), rows[2])])[
            1
        ]
        for s in range(30)
    }
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
    assert {
        pick_tokens(logits, no_seen(1, 4), [only_top], [row_generator(params(seed=s), CPU)])[0] for s in range(50)
    } == {0}
    two = params(top_p=0.7)
    assert {pick_tokens(logits, no_seen(1, 4), [two], [row_generator(params(seed=s), CPU)])[0] for s in range(200)} == {
        0,
        1,
    }


def test_sampling_beyond_the_top_candidates_uses_the_full_nucleus() -> None:
    """A flat distribution: the top 256 candidates hold too little mass, so the full sort is used."""
    vocab = 1024
    logits = (-torch.arange(vocab, dtype=torch.float32) * 1e-3).unsqueeze(0)
    top_p = 0.6
    probs = torch.softmax(logits[0], dim=-1)
    assert float(probs[:TOP_CANDIDATES].sum()) < top_p
    kept = nucleus(probs.unsqueeze(0), torch.tensor([top_p]))[0]  # probs are sorted already: tokens 0..size-1
    size = int((kept > 0).sum())
    assert TOP_CANDIDATES < size < vocab
    row = params(top_p=top_p, seed=3)
    gen = row_generator(row, CPU)
    picks = [pick_tokens(logits, no_seen(1, vocab), [row], [gen])[0] for _ in range(1000)]
    assert max(picks) < size
    in_top = sum(p < TOP_CANDIDATES for p in picks) / len(picks)  # sd about 0.016
    assert in_top == pytest.approx(float(kept[:TOP_CANDIDATES].sum() / kept.sum()), abs=0.06)


def batch_of_draws(probs: list[float], top_p: float, rows: int = 4000) -> list[int]:
    """One step of ``rows`` identical rows, each with its own seed: ``rows`` independent draws."""
    vocab = len(probs)
    logits = log_probs(*probs).expand(rows, vocab)
    every = [params(top_p=top_p, seed=seed) for seed in range(rows)]
    picks = pick_tokens(logits, no_seen(rows, vocab), every, [row_generator(p, CPU) for p in every])
    assert all(isinstance(p, int) for p in picks)
    return picks  # type: ignore[return-value]


def flat_tail(vocab: int) -> list[float]:
    """Two likely tokens and a long flat tail: the top 256 hold about 0.68 of the mass."""
    return [0.3, 0.15] + [0.55 / (vocab - 2)] * (vocab - 2)


@pytest.mark.parametrize(
    ("probs", "top_p"),
    [
        ([0.7, 0.3], 1.0),  # the whole vocabulary, no sort
        ([0.6, 0.3, 0.05, 0.05], 0.85),  # the nucleus {0, 1} within the top candidates
        (flat_tail(600), 0.8),  # the nucleus reaches past them: the full sort
    ],
    ids=["whole vocabulary", "top candidates", "full sort"],
)
def test_draws_land_on_each_token_in_proportion_to_its_share_of_the_nucleus(probs: list[float], top_p: float) -> None:
    ordered = torch.tensor(sorted(probs, reverse=True))
    kept = nucleus(ordered.unsqueeze(0), torch.tensor([top_p if top_p < 1.0 else math.inf]))[0]
    size = int((kept > 0).sum())
    picks = batch_of_draws(probs, top_p)
    for token in (0, 1):  # the two likely tokens; the rest of the nucleus is flat or absent
        share = sum(p == token for p in picks) / len(picks)
        assert share == pytest.approx(probs[token] / float(kept.sum()), abs=0.03)  # sd at most 0.008
    # Nothing outside the nucleus: the flat tail is tied, so which of its tokens the sort keeps is arbitrary,
    # but not how many (drawing from the whole tail instead would show about 580 different tokens, not 380).
    assert len(set(picks)) <= size
    if size > TOP_CANDIDATES:
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


@pytest.mark.parametrize(
    ("neighbour", "flavour"),
    [
        (params(temperature=1.0, top_p=0.9, seed=8), "random"),
        (params(temperature=0.0), "random"),
        (params(temperature=0.7, top_p=1.0, repetition_penalty=1.3, seed=None), "random"),
        (params(temperature=1.0, top_p=0.9, seed=8), "flat"),  # the neighbour needs the full sort
        (params(temperature=1.0, top_p=0.9, seed=8), "nan"),  # the neighbour fails
    ],
    ids=["sampling", "greedy", "whole vocabulary", "full sort", "not finite"],
)
def test_a_seeded_row_does_not_depend_on_the_rest_of_the_batch(neighbour: SamplingParams, flavour: str) -> None:
    torch.manual_seed(2)
    vocab = 300
    mine_logits = torch.randn(vocab) * 2
    other_logits = {
        "random": torch.randn(vocab) * 2,
        "flat": torch.zeros(vocab),
        "nan": torch.full((vocab,), float("nan")),
    }[flavour]
    seen_mine = torch.zeros(vocab, dtype=torch.bool)
    seen_mine[:20] = True
    seen_other = torch.rand(vocab) > 0.5
    mine = params(temperature=0.8, top_p=0.9, repetition_penalty=1.2, seed=7)

    def alone() -> list[object]:
        gen = row_generator(mine, CPU)
        return [pick_tokens(mine_logits.unsqueeze(0), seen_mine.unsqueeze(0), [mine], [gen])[0] for _ in range(40)]

    def batched(first: bool) -> list[object]:
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


def test_a_row_whose_logits_are_not_a_distribution_gets_its_error_and_the_others_their_usual_tokens() -> None:
    torch.manual_seed(4)
    vocab = 300
    logits = torch.randn(7, vocab) * 2
    logits[0, 13] = float("-inf")  # one token ruled out: still a distribution
    rows = [
        params(temperature=0.8, seed=1),
        params(temperature=0.7, seed=2),
        params(temperature=0.0),
        params(temperature=0.0, repetition_penalty=1.2),
        params(temperature=0.9, top_p=0.8, seed=3),
        params(temperature=1e-4, seed=4),
        params(temperature=0.0),
    ]

    def picks(batch_logits: torch.Tensor) -> list[list[object]]:
        gens = [row_generator(p, CPU) for p in rows]
        return [pick_tokens(batch_logits, no_seen(7, vocab), rows, gens) for _ in range(10)]

    clean = picks(logits)
    assert all(isinstance(pick, int) for step in clean for pick in step)
    poisoned_logits = logits.clone()
    poisoned_logits[1, 7] = float("nan")  # a sampled row, between two seeded ones
    poisoned_logits[3, 9] = float("inf")  # a greedy row: its argmax would be a token, but not a sound one
    poisoned_logits[5, 11] = 1e36  # finite, but not once divided by its temperature
    poisoned_logits[6] = float("-inf")  # every token ruled out
    poisoned = picks(poisoned_logits)
    for step_clean, step_poisoned in zip(clean, poisoned, strict=True):
        for row in (1, 3, 5, 6):
            assert isinstance(step_poisoned[row], ValueError) and "not a distribution" in str(step_poisoned[row])
        assert [step_poisoned[r] for r in (0, 2, 4)] == [step_clean[r] for r in (0, 2, 4)]


class HostReads(TorchFunctionMode):
    """Counts the calls that bring a tensor's value to the host: on a GPU, each waits for the queued work."""

    READS = frozenset({"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy", "cpu"})

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += getattr(func, "__name__", "") in self.READS
        return func(*args, **(kwargs or {}))


def test_a_step_reads_the_device_once_however_many_rows_and_twice_when_a_row_needs_the_full_sort() -> None:
    torch.manual_seed(5)
    vocab = 1000
    kinds = [
        params(temperature=0.7, top_p=0.9, repetition_penalty=1.1, seed=1),
        params(temperature=0.0),
        params(temperature=1.0, top_p=1.0, seed=2),
        params(temperature=0.0, repetition_penalty=1.3),
    ]
    rows = kinds * 4
    logits = torch.randn(len(rows), vocab) * 4
    seen = torch.rand(len(rows), vocab) > 0.9
    gens = [row_generator(p, CPU) for p in rows]
    with HostReads() as reads:
        picks = pick_tokens(logits, seen, rows, gens)
    assert all(isinstance(p, int) for p in picks)
    assert reads.count == 1
    logits[0] = 0.0  # flat: its top 256 of 1000 tokens hold 0.256 < 0.9
    with HostReads() as reads:
        picks = pick_tokens(logits, seen, rows, gens)
    assert all(isinstance(p, int) for p in picks)
    assert reads.count == 2


@pytest.mark.parametrize("seed", [2**80, 2**64, -(2**63) - 1])
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
