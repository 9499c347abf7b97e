"""The scheduler's limits, seen from outside: queue full (503), rate limit (429), backlog cap, batching.

The rate limit's answer is the HTTP layer's mapping of the engine's refusal, checked on a fake engine; the
queue and the backlog cap are the real scheduler's, checked on the real model (``slow``).
"""

from __future__ import annotations

import pytest
from waiting import wait_for


def long_request(max_tokens: int = 150) -> dict:
    """Long enough to hold the only batch slot while the test fills the queue (a few seconds here), short
    enough to finish within the background client's 120 s on a machine that is busy with other work."""
    return {
        "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "seed": 1,
    }


@pytest.mark.slow
def test_full_queue_answers_503_with_retry_after(start_daemon) -> None:
    daemon = start_daemon(max_batch=1, queue_size=1)
    running = daemon.post_in_background(long_request())
    with daemon.client() as client:
        _wait_in_flight(daemon, 1)
        queued = daemon.post_in_background(long_request(5))
        _wait_queue_depth(daemon, 1)
        refused = client.post("/v1/chat/completions", json=long_request(5))
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["retry-after"]) >= 1
    running.join(120)
    queued.join(120)
    assert daemon.status()["requests"]["rejected"] == 1


def test_rate_limit_answers_429_with_retry_after(start_fake_engine_daemon) -> None:
    daemon = start_fake_engine_daemon(rate_limit_per_minute=6, rate_limit_burst=2)
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    with daemon.client() as client:
        codes = [client.post("/v1/chat/completions", json=body).status_code for _ in range(2)]
        limited = client.post("/v1/chat/completions", json=body)
    assert codes == [200, 200]
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(limited.headers["retry-after"]) <= 10  # one token per 10 s at 6/minute


@pytest.mark.slow
def test_backlog_caps_max_tokens_of_newcomers(start_daemon) -> None:
    daemon = start_daemon(max_batch=1, backlog_threshold=1, backlog_max_tokens=3)
    first = daemon.post_in_background(long_request(60))
    _wait_in_flight(daemon, 1)
    second = daemon.post_in_background(long_request(60))
    _wait_queue_depth(daemon, 1)
    assert daemon.status()["queue"]["backlog_cap_active"] is True
    with daemon.client() as client:
        capped = client.post("/v1/chat/completions", json=long_request(60)).json()
    first.join(120)
    second.join(120)
    assert capped["choices"][0]["finish_reason"] == "length"
    assert capped["usage"]["completion_tokens"] == 3
    assert capped["timings"]["max_tokens_capped"] is True


def _wait_in_flight(daemon, n: int) -> None:
    wait_for(lambda: daemon.status()["queue"]["in_flight"] >= n, timeout=30)


def _wait_queue_depth(daemon, n: int) -> None:
    wait_for(lambda: daemon.status()["queue"]["depth"] >= n, timeout=30)
