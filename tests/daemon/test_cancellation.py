"""A client that hangs up mid-stream stops its generation: the engine stops producing tokens.

What is tested is the HTTP layer noticing the hang-up and cancelling the request, so a fake engine serves
(the real scheduler's handling of a cancelled row is tested in tests/engine/).
"""

from __future__ import annotations

import time

import httpx
import pytest
from inprocess_daemon import InProcessDaemon
from waiting import wait_for

LONG = {
    "messages": [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}],
    "max_tokens": 2000,
    "temperature": 0.8,
    "seed": 3,
    "stream": True,
}


@pytest.fixture
def daemon(fake_engine_daemon: InProcessDaemon) -> InProcessDaemon:
    """A fake engine that writes a long story, 50 tokens a second."""
    fake_engine_daemon.engine.script = "Once upon a time " * 1000
    fake_engine_daemon.engine.token_delay_s = 0.02
    return fake_engine_daemon


def test_disconnect_mid_stream_stops_generation(daemon) -> None:
    before = daemon.status()["requests"]
    with daemon.client() as client, client.stream("POST", "/v1/chat/completions", json=LONG) as response:
        assert response.status_code == 200
        pieces: list[str] = []
        for line in response.iter_lines():
            if line.startswith("data: "):
                pieces.append(line)
            if len(pieces) >= 6:
                break
    # The connection is closed here. Generation must stop at the next token, not run to 2000.
    status = wait_for(lambda: (s := daemon.status())["queue"]["in_flight"] == 0 and s)
    assert status["requests"]["cancelled"] == before["cancelled"] + 1
    tokens_after_cancel = status["requests"]["tokens_out"]
    time.sleep(1.0)
    later = daemon.status()["requests"]
    assert later["tokens_out"] == tokens_after_cancel, "tokens kept coming after the client left"
    generated = tokens_after_cancel - before["tokens_out"]
    assert 5 <= generated < 100, f"{generated} tokens generated for a stream abandoned after 5"


def test_disconnect_while_waiting_for_a_non_streamed_reply_cancels(daemon) -> None:
    before = daemon.status()["requests"]
    body = {**LONG, "stream": False}
    with daemon.client(timeout=1.0) as client, pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json=body)
    status = wait_for(lambda: (s := daemon.status())["queue"]["in_flight"] == 0 and s)
    assert status["requests"]["cancelled"] == before["cancelled"] + 1
    assert status["requests"]["tokens_out"] - before["tokens_out"] < 200
