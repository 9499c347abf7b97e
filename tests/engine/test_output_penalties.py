"""Frequency and presence penalties count each row's own reply, through every join and leave of its batch.

The batch-level test feeds tokens by hand and checks the count table row by row; the scheduler-level test
runs the real inference loop on the tiny random model (whose greedy noise soon repeats itself) with rows
joining and leaving around a penalised request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from scheduling import PROMPT, greedy, run

from trayllm.engine.batch import RunningBatch, prefill
from trayllm.engine.handle import RequestHandle
from trayllm.engine.models import LoadedModel
from trayllm.engine.rows import Job
from trayllm.engine.scheduler import Scheduler

CPU = torch.device("cpu")


def counted(batch: RunningBatch[str]) -> dict[str, dict[int, int]]:
    """Each row's nonzero counts, by row name."""
    assert batch.counts is not None
    return {
        row: {int(t): int(batch.counts[i, t]) for t in batch.counts[i].nonzero().flatten()}
        for i, row in enumerate(batch.rows)
    }


def test_reply_counts_start_at_zero_and_follow_their_rows_as_rows_join_and_leave(tiny: LoadedModel) -> None:
    model = tiny.model
    with torch.no_grad():
        assert prefill(model, ["x"], [[5, 6]], pad_id=0, device=CPU)[0].counts is None  # nobody asked: no table
        batch, _ = prefill(model, ["a", "b"], [[5, 6, 7], [8, 9]], pad_id=0, device=CPU, count_replies=True)
        assert counted(batch) == {"a": {}, "b": {}}  # the prompts are not the reply
        batch.step(model, [7, 8])
        batch.step(model, [7, 9])
        fresh, _ = prefill(model, ["c"], [[7, 7, 7]], pad_id=0, device=CPU)  # a newcomer counting nothing
        batch.absorb(fresh)
        assert counted(batch) == {"a": {7: 2}, "b": {8: 1, 9: 1}, "c": {}}
        batch.step(model, [3, 8, 4])
        batch.keep([2, 0])  # "b" leaves and the others swap places
        assert counted(batch) == {"c": {4: 1}, "a": {7: 2, 3: 1}}
        plain, _ = prefill(model, ["d"], [[1]], pad_id=0, device=CPU)
        plain.absorb(batch)  # a batch counting nothing takes in one that counts
        assert counted(plain) == {"d": {}, "c": {4: 1}, "a": {7: 2, 3: 1}}
        plain.keep([1])
        plain.stop_counting()
        plain.step(model, [2])
    assert plain.counts is None and plain.rows == ["c"]


def tokens_of(scheduler: Scheduler, requests: dict[str, tuple[int, float]]) -> dict[str, list[int]]:
    """Run greedy ``requests`` (id -> (max_tokens, presence penalty)) submitted in that order, before the loop
    starts; the token ids each one took, in order."""
    taken: dict[str, list[int]] = {request_id: [] for request_id in requests}
    take = Scheduler._take_token

    def recording(self: Scheduler, job: Job, token: int, now: float) -> None:
        taken[job.handle.request_id].append(token)
        take(self, job, token, now)

    handles = {request_id: RequestHandle(request_id) for request_id in requests}
    for request_id, (max_tokens, presence) in requests.items():
        scheduler.submit(handles[request_id], "u", PROMPT, replace(greedy(max_tokens), presence_penalty=presence))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Scheduler, "_take_token", recording)
        scheduler.start()
        for handle in handles.values():
            assert run(handle)[1].reason == "length"
    return taken


def test_a_penalised_row_never_repeats_its_reply_while_unpenalised_rows_come_and_go(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    alone = tokens_of(make_scheduler(start=False), {"alone": (40, 0.0)})["alone"]
    assert len(set(alone)) < len(alone)  # without the penalty the noise repeats itself

    # Two rows at a time: "short" leaves first, so "penalised" moves from row 1 to row 0, then "joiner" and
    # "late" (penalised too) join and leave beside it.
    requests = {"short": (4, 0.0), "penalised": (40, 2.0), "joiner": (6, 0.0), "late": (20, 2.0)}
    taken = tokens_of(make_scheduler(start=False, max_batch=2), requests)
    for request_id in ("penalised", "late"):
        assert len(set(taken[request_id])) == len(taken[request_id]) == requests[request_id][0]
    for request_id in ("short", "joiner"):  # an unpenalised row is picked as it would be alone
        assert taken[request_id] == alone[: requests[request_id][0]]
