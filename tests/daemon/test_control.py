"""The control endpoints on a fake engine: pause, resume, reload, faults and the event stream, over HTTP.

What the engine does on a pause or a reload is the engine's (tested on the real one in test_slo_alerts.py);
here, what the handlers accept, refuse, answer and publish.
"""

from __future__ import annotations

import json

from inprocess_daemon import InProcessDaemon
from waiting import wait_for

from trayllm.api import MAX_MODEL_SETTING
from trayllm.daemon.control import MAX_REASON

CHAT = {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 3}


def test_pause_refuses_chats_with_the_reason_until_resume(fake_engine_daemon: InProcessDaemon) -> None:
    with fake_engine_daemon.client() as client:
        assert client.post("/v1/pause", json={"reason": "gaming"}).json() == {"paused": "gaming"}
        refused = client.post("/v1/chat/completions", json=CHAT)
        assert client.get("/readyz").status_code == 200, "a paused daemon still has its model"
        status = client.get("/v1/status").json()
        assert client.post("/v1/resume").json() == {"paused": None}
        served = client.post("/v1/chat/completions", json=CHAT)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "paused"
    assert "gaming" in refused.json()["error"]["message"]
    assert status["paused"] == "gaming"
    assert served.status_code == 200
    assert [e.type for e in fake_engine_daemon.bus.recent()] == ["serving.paused", "serving.resumed"]


def test_a_pause_without_a_body_has_the_default_reason_and_a_bad_one_is_a_400(
    fake_engine_daemon: InProcessDaemon,
) -> None:
    with fake_engine_daemon.client() as client:
        bad = [
            client.post("/v1/pause", content=b"{nope"),
            client.post("/v1/pause", json={"reason": 7}),
            client.post("/v1/pause", json={"reason": "x" * (MAX_REASON + 1)}),
            client.post("/v1/pause", json=[1]),
        ]
        assert fake_engine_daemon.engine.paused is None, "a refused pause paused"
        paused = client.post("/v1/pause")
    assert [r.status_code for r in bad] == [400, 400, 400, 400]
    assert "not valid JSON" in bad[0].json()["error"]["message"]
    assert bad[1].json()["error"]["param"] == "reason" and bad[2].json()["error"]["param"] == "reason"
    assert paused.json() == {"paused": "paused by the user"}


def test_reload_is_accepted_once_at_a_time(fake_engine_daemon: InProcessDaemon) -> None:
    with fake_engine_daemon.client() as client:
        accepted = client.post("/v1/reload")
        again = client.post("/v1/reload")
        wait_for(lambda: client.get("/readyz").status_code == 200)
    assert accepted.status_code == 202 and accepted.json() == {"state": "reloading"}
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


def test_a_hostile_reload_body_is_a_400_and_reloads_nothing(fake_engine_daemon: InProcessDaemon) -> None:
    with fake_engine_daemon.client() as client:
        bad = [
            client.post("/v1/reload", content=b"{nope"),
            client.post("/v1/reload", json=[1]),
            client.post("/v1/reload", json={"model": 7}),
            client.post("/v1/reload", json={"model": "x" * (MAX_MODEL_SETTING + 1)}),
            client.post("/v1/reload", json={"model": "/tmp/a\nb"}),
            client.post("/v1/reload", json={"model": "m", "force": True}),
        ]
        assert fake_engine_daemon.engine.state == "ready", "a refused reload reloaded"
        switched = client.post("/v1/reload", json={"model": "/some/model"})
    assert [r.status_code for r in bad] == [400] * 6
    assert all(set(r.json()["error"]) >= {"message", "type", "code"} for r in bad)
    assert [r.json()["error"]["param"] for r in bad[2:]] == ["model", "model", "model", "force"]
    assert switched.status_code == 202


def test_faults_are_404_unless_the_setting_is_on(fake_engine_daemon: InProcessDaemon) -> None:
    with fake_engine_daemon.client() as client:
        answers = [client.request(method, "/v1/faults") for method in ("GET", "PUT", "DELETE")]
    for answer in answers:
        assert answer.status_code == 404 and "fault_injection" in answer.json()["error"]["message"]


def test_a_fault_plan_is_set_shown_refused_when_bad_and_cleared(start_fake_engine_daemon) -> None:
    daemon = start_fake_engine_daemon(fault_injection=True)
    with daemon.client() as client:
        put = client.put("/v1/faults", json={"delay_at": "decode", "delay_s": 0.5})
        shown = client.get("/v1/faults")
        bad = client.put("/v1/faults", json={"oom_at": "sideways"})
        unknown = client.put("/v1/faults", json={"meteor": True})
        cleared = client.delete("/v1/faults")
    assert put.status_code == 200 and put.json()["delay_at"] == "decode" and put.json()["delay_s"] == 0.5
    assert shown.json() == put.json()
    assert bad.status_code == 400 and "bad fault plan" in bad.json()["error"]["message"]
    assert unknown.status_code == 400 and "meteor" in unknown.json()["error"]["message"]
    assert cleared.json()["delay_at"] is None and cleared.json()["delay_s"] == 0


def test_the_event_stream_starts_with_hello_and_carries_what_happens(fake_engine_daemon: InProcessDaemon) -> None:
    with fake_engine_daemon.client() as client, client.stream("GET", "/v1/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        hello = _next_event(lines)
        with fake_engine_daemon.client() as other:
            other.post("/v1/pause", json={"reason": "gaming"})
        paused = _next_event(lines)
    assert hello[0] == "hello" and hello[1]["state"] == "ready" and hello[1]["model"] == "smollm2-135m-instruct"
    assert hello[1]["boot_id"] == fake_engine_daemon.bus.boot_id and hello[1]["alerts"] == []
    assert paused[0] == "serving.paused" and paused[1]["reason"] == "gaming"


def _next_event(lines) -> tuple[str, dict]:
    """The next SSE event's type and data (keepalives, ids and retry lines skipped)."""
    kind = None
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind is not None:
            return kind, json.loads(line.removeprefix("data: "))
    raise AssertionError("the event stream ended")
