"""One request's failure is its own: a poisoned row ends alone and its batch carries on untouched.

Runs the real scheduler on the tiny random model. Each test runs the same requests twice, once clean and
once with one of them poisoned (a failure injected into its own token step, or a seed torch cannot
take), and checks that every other request's reply is token for token the clean one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from scheduling import PROMPT, greedy, run

from trayllm.engine.faults import FaultPlan, Faults
from trayllm.engine.handle import RequestHandle
from trayllm.engine.scheduler import Scheduler
from trayllm.engine.types import Finished, SamplingParams, TokenText
from trayllm.errors import EngineFailure, InvalidRequest

OTHER_PROMPT = [1, 9690, 198, 504, 2, 1, 4093, 198, 19842, 614, 253, 1345, 30]


def seeded(max_tokens: int, seed: int) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.8, top_p=0.9, repetition_penalty=1.1, seed=seed)


Requests = dict[str, tuple[list[int], SamplingParams]]  # request id -> (prompt, params)

HEALTHY: Requests = {"greedy": (PROMPT, greedy(24)), "seeded": (OTHER_PROMPT, seeded(24, 11))}
"""The rows that must not notice: one greedy, one sampling with a seed (its draws must not shift)."""


def replies(scheduler: Scheduler, requests: Requests) -> dict[str, tuple[str, Finished]]:
    """Submit every request before the scheduler starts (so they share the first prefill), run them all."""
    handles = {}
    for request_id, (prompt, params) in requests.items():
        handles[request_id] = RequestHandle(request_id)
        scheduler.submit(handles[request_id], "u", prompt, params)
    scheduler.start()
    return {request_id: run(handle) for request_id, handle in handles.items()}


def text_and_count(result: tuple[str, Finished]) -> tuple[str, str, int]:
    text, finished = result
    return text, finished.reason, finished.completion_tokens


@pytest.mark.parametrize("after_tokens", [0, 5], ids=["at its first token", "mid-generation"])
def test_a_row_whose_own_step_raises_fails_alone_and_the_others_match_a_clean_run(
    make_scheduler: Callable[..., Scheduler], after_tokens: int
) -> None:
    requests = {**HEALTHY, "poisoned": (PROMPT + [28, 30], seeded(24, 3))}
    clean = replies(make_scheduler(start=False), requests)
    faults = FaultPlan()
    faults.set(Faults(fail_request="poisoned", fail_after_tokens=after_tokens))
    poisoned = replies(make_scheduler(start=False, faults=faults), requests)

    text, finished = poisoned["poisoned"]
    assert finished.reason == "error" and isinstance(finished.error, EngineFailure)
    assert "fault injection" in finished.error.message
    assert finished.completion_tokens == after_tokens
    assert text_and_count(clean["poisoned"])[2] == 24  # clean, it ran to its length
    for request_id in HEALTHY:
        assert text_and_count(poisoned[request_id]) == text_and_count(clean[request_id]), request_id
        assert text_and_count(clean[request_id])[1:] == ("length", 24)


def test_a_seed_torch_cannot_take_fails_that_request_alone_as_a_client_error(
    make_scheduler: Callable[..., Scheduler],
) -> None:
    """Past the HTTP edge (which refuses it with a 400), the engine still keeps such a seed to its request."""
    clean = replies(make_scheduler(start=False), HEALTHY)
    bad = {**HEALTHY, "huge seed": (PROMPT, seeded(24, 2**80))}
    isolated = replies(make_scheduler(start=False), bad)
    for request_id in HEALTHY:
        assert text_and_count(isolated[request_id]) == text_and_count(clean[request_id]), request_id
    _, finished = isolated["huge seed"]
    assert finished.reason == "error" and isinstance(finished.error, InvalidRequest)
    assert finished.error.param == "seed" and finished.error.status_code == 400
    assert finished.completion_tokens == 0


def test_a_bad_seed_joining_a_running_batch_leaves_it_running(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler()
    running = RequestHandle("running")
    scheduler.submit(running, "u", PROMPT, greedy(300))
    events = running.iter_events(timeout=30)
    assert isinstance(next(events), TokenText)  # decoding now
    newcomer = RequestHandle("newcomer")
    scheduler.submit(newcomer, "u", PROMPT, seeded(5, -(2**63) - 1))
    _, refused = run(newcomer)
    last = list(events)[-1]
    assert isinstance(last, Finished)
    assert last.reason == "length" and last.completion_tokens == 300
    assert isinstance(refused.error, InvalidRequest) and refused.error.param == "seed"
    assert refused.timings.finished is not None and last.timings.finished is not None
    assert refused.timings.finished < last.timings.finished  # it really was refused while the other ran
    assert scheduler.counters.failed == 1 and scheduler.counters.completed == 1


@pytest.mark.parametrize("extreme", [{"temperature": 1e-300}, {"top_p": 1e-300}])
def test_temperature_or_top_p_too_small_for_float32_is_served_as_greedy(
    make_scheduler: Callable[..., Scheduler], extreme: dict[str, float]
) -> None:
    params = SamplingParams(**{**seeded(16, 5).__dict__, **extreme})
    reference = SamplingParams(**{**seeded(16, 5).__dict__, "temperature": 0.0})
    served = replies(make_scheduler(start=False), {"extreme": (PROMPT, params), "greedy": (OTHER_PROMPT, greedy(16))})
    expected = replies(
        make_scheduler(start=False), {"extreme": (PROMPT, reference), "greedy": (OTHER_PROMPT, greedy(16))}
    )
    assert text_and_count(served["extreme"]) == text_and_count(expected["extreme"])
    assert text_and_count(served["extreme"])[1:] == ("length", 16)
    assert text_and_count(served["greedy"]) == text_and_count(expected["greedy"])
