"""Issue 4's acceptance over a real daemon and real HTTP: injected OOM and latency faults end to end, the
event stream (replay, restarts, shutdown), pause/resume/reload, and the live SLO report matching the
offline one computed from the record file."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from waiting import wait_for

from trayllm import errors
from trayllm.cli import cli
from trayllm.client import DaemonClient, DaemonEvent
from trayllm.telemetry.reader import iter_records
from trayllm.telemetry.schema import ALERTS, validate_record

pytestmark = pytest.mark.slow

CHAT = {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 3, "temperature": 0}


class Listener:
    """Follows /v1/events on a thread, keeping (arrival time, event)."""

    def __init__(self, socket: Path, last_event_id: str | None = None) -> None:
        self.events: queue.Queue[tuple[float, DaemonEvent | None]] = queue.Queue()
        self.seen: list[tuple[float, DaemonEvent]] = []
        self.ended = threading.Event()
        self._client = DaemonClient(socket_path=socket)
        self._thread = threading.Thread(target=self._listen, args=(last_event_id,), daemon=True)
        self._thread.start()
        self.next(lambda e: e.type == "hello")

    def _listen(self, last_event_id: str | None) -> None:
        try:
            for event in self._client.events(last_event_id):
                self.events.put((time.monotonic(), event))
        except errors.TrayllmError:
            pass
        finally:
            self.ended.set()
            self.events.put((time.monotonic(), None))

    def next(self, match, timeout: float = 20.0) -> tuple[float, DaemonEvent]:
        """The next event that ``match``es (others are kept in ``seen``)."""
        deadline = time.monotonic() + timeout
        while True:
            at, event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if event is None:
                raise AssertionError("the event stream ended")
            self.seen.append((at, event))
            if match(event):
                return at, event

    def drain(self, seconds: float) -> list[DaemonEvent]:
        """Everything that arrives in the next ``seconds``."""
        got, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                at, event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if event is not None:
                self.seen.append((at, event))
                got.append(event)
        return got

    def close(self) -> None:
        self._client.close()


def state_dir(daemon) -> Path:
    return Path(daemon.env["XDG_STATE_HOME"]) / "trayllm"


def alert(key: str, state: str):
    return lambda e: e.type == f"alert.{state}" and e.data["key"] == key


def test_an_injected_oom_fails_one_request_alerts_at_once_and_serving_goes_on(start_daemon) -> None:
    daemon = start_daemon(fault_injection=True)
    listener = Listener(daemon.socket)
    with DaemonClient(socket_path=daemon.socket) as client:
        assert client.set_faults(oom_at="prefill")["ooms_left"] == 1
        with pytest.raises(errors.EngineOutOfMemory) as failed:
            client.chat(CHAT)
        failed_at = time.monotonic()
        assert failed.value.status_code == 503 and "out of memory" in failed.value.message
        oom_id = failed.value.request_id
        at, event = listener.next(alert("oom", "firing"))
        assert at - failed_at < 1.0, f"the OOM alert took {at - failed_at:.2f} s"
        assert event.data["severity"] == "critical"
        assert event.data["details"]["request_ids"] == [oom_id] and event.data["details"]["phase"] == "prefill"

        reply = client.chat(CHAT)  # the next request is served
        assert reply.choices[0].message.content
        ok_id = client.last_request_id
        status = client.status()
        assert [a.key for a in status.alerts] == ["oom"] and status.alerts[0].id == event.id
        assert status.requests.failed == 1 and status.requests.completed == 1
    listener.close()
    assert daemon.stop() == 0

    records = {r["event"]["id"]: r for r in iter_records(state_dir(daemon) / "requests.jsonl")}
    assert records[oom_id]["error"]["type"] == "oom" and records[oom_id]["event"]["outcome"] == "failure"
    assert records[oom_id]["http"]["response"]["status_code"] == 503
    assert records[ok_id]["event"]["outcome"] == "success"
    assert all(validate_record(r) == [] for r in records.values())
    [oom_alert] = [a for a in iter_records(state_dir(daemon) / "alerts.jsonl") if a["rule"]["name"] == "oom"]
    assert ALERTS.validate(oom_alert) == []
    assert oom_alert["event"]["id"] == event.id and oom_alert["event"]["action"] == "firing"
    assert oom_alert["llm"]["alert"]["request_ids"] == [oom_id] and oom_alert["log"]["level"] == "error"


def test_injected_delay_fires_the_latency_alert_and_removing_it_resolves_it_once(start_daemon) -> None:
    daemon = start_daemon(
        fault_injection=True,
        slo_ttft_p99_s=0.5,
        slo_ttft_window_s=4,
        slo_min_samples=3,
        slo_eval_interval_s=0.2,
        rate_limit_per_minute=0,
    )
    key = "slo.first_token_latency_p99"
    listener = Listener(daemon.socket)
    with DaemonClient(socket_path=daemon.socket) as client:
        client.set_faults(delay_at="prefill", delay_s=0.8)
        for _ in range(3):
            client.chat(CHAT)
        _, fired = listener.next(alert(key, "firing"), timeout=10)
        assert fired.data["value"] > 0.8 and fired.data["threshold"] == 0.5

        # hovering at the threshold: first-token latency = 0.46 s of delay + the model's own time, so the
        # window's P99 sits in or above the hysteresis band (0.45 .. 0.5 s) and never below it
        client.set_faults(delay_at="prefill", delay_s=0.46)
        for _ in range(8):
            client.chat(CHAT)
        assert [e for e in listener.drain(1.0) if e.type.startswith("alert.")] == []

        client.clear_faults()
        resolved = None
        deadline = time.monotonic() + 30
        while resolved is None and time.monotonic() < deadline:
            client.chat(CHAT)
            resolved = next((e for e in listener.drain(0.3) if alert(key, "resolved")(e)), None)
        assert resolved is not None, "the latency alert did not resolve"
        assert resolved.data["value"] < 0.45
        assert [e.data["state"] for _, e in listener.seen if e.type.startswith("alert.") and e.data["key"] == key] == [
            "firing",
            "resolved",
        ]
    listener.close()
    daemon.stop()
    transitions = [(a["rule"]["name"], a["event"]["action"]) for a in iter_records(state_dir(daemon) / "alerts.jsonl")]
    assert transitions == [(key, "firing"), (key, "resolved")]


def test_pause_resume_reload_and_events_with_last_event_id(start_daemon) -> None:
    daemon = start_daemon()
    listener = Listener(daemon.socket)
    with DaemonClient(socket_path=daemon.socket) as client:
        client.chat(CHAT)
        client.pause("gaming")
        _, paused = listener.next(lambda e: e.type == "serving.paused")
        assert paused.data["reason"] == "gaming"
        with pytest.raises(errors.Paused) as refused:
            client.chat(CHAT)
        assert refused.value.status_code == 503 and "gaming" in refused.value.message
        assert client.status().paused == "gaming" and client.ready()  # paused, still loaded
        listener.close()  # the tray goes away here...

        client.resume()
        client.reload()
        client.wait_ready(120)
        assert client.chat(CHAT).choices[0].message.content
        status = client.status()
        assert status.paused is None and status.requests.completed == 2  # counters survive the reload

        # ...and comes back with the id of the last event it saw: it gets exactly what it missed
        again = Listener(daemon.socket, last_event_id=paused.id)
        missed = [again.next(lambda e: True)[1] for _ in range(3)]
        assert [e.type for e in missed] == ["serving.resumed", "model.reloading", "model.loaded"]
        assert missed[2].data["reloaded"] is True
        paused_seq = int(paused.id.rsplit("-", 1)[1])
        assert [int(e.id.rsplit("-", 1)[1]) for e in missed] == [paused_seq + 1, paused_seq + 2, paused_seq + 3]
        hello = next(e for _, e in again.seen if e.type == "hello")
        assert hello.data["boot_id"] == paused.id.rsplit("-", 1)[0] and hello.data["state"] == "ready"

        daemon.stop()  # the stream says so, then ends
        again.next(lambda e: e.type == "daemon.shutting_down", timeout=15)
        assert again.ended.wait(15)
    records = list(iter_records(state_dir(daemon) / "requests.jsonl"))
    assert [r.get("error", {}).get("type") for r in records] == [None, "paused", None]


def test_a_bad_reload_or_pause_is_refused_and_faults_need_the_setting(start_daemon) -> None:
    daemon = start_daemon()
    with daemon.client() as http:
        bad = http.post("/v1/pause", content=b"{nope")
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
        assert http.post("/v1/pause", json={"reason": 7}).status_code == 400
        faults = http.put("/v1/faults", json={"oom_at": "prefill"})
        assert faults.status_code == 404 and "fault_injection" in faults.json()["error"]["message"]
        assert http.post("/v1/reload").status_code == 202
        again = http.post("/v1/reload")
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
        wait_for(lambda: http.get("/readyz").status_code == 200, timeout=120)
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_trayllm_slo_from_the_file_matches_the_live_daemon(start_daemon) -> None:
    daemon = start_daemon(slo_min_samples=3, fault_injection=True, rate_limit_per_minute=0)
    with DaemonClient(socket_path=daemon.socket) as client:
        for max_tokens in (2, 3, 4, 5):
            client.chat({**CHAT, "max_tokens": max_tokens})
        client.set_faults(oom_at="prefill")
        with pytest.raises(errors.EngineOutOfMemory):
            client.chat(CHAT)
        with pytest.raises(errors.InvalidRequest):
            client.chat({**CHAT, "max_tokens": 0})
        wait_for(lambda: client.slo().objectives[2].samples == 5)  # the 400 is not counted
        live = client.slo()
    daemon.stop()
    records = state_dir(daemon) / "requests.jsonl"
    result = CliRunner().invoke(
        cli, ["slo", "--json", "--from", str(records), "--at", repr(live.at)], env=daemon.env, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    offline = json.loads(result.output)
    assert offline["objectives"] == [row.model_dump() for row in live.objectives]
    errors_row = offline["objectives"][2]
    assert (errors_row["samples"], errors_row["value"]) == (5, pytest.approx(0.2))
    text = CliRunner().invoke(cli, ["slo", "--from", str(records), "--at", repr(live.at)], env=daemon.env)
    assert "error_rate" in text.output and "breach" in text.output


def test_a_restarted_daemon_refills_its_windows_and_remembers_firing_alerts(tmp_path: Path) -> None:
    from daemons import spawn_daemon

    home = tmp_path / "home"  # both daemons share it: same record and alert files
    first = spawn_daemon(home, fault_injection=True, slo_min_samples=3, rate_limit_per_minute=0)
    with DaemonClient(socket_path=first.socket) as client:
        for _ in range(3):
            client.chat(CHAT)
        client.set_faults(oom_at="prefill")
        with pytest.raises(errors.EngineOutOfMemory):
            client.chat(CHAT)
        wait_for(lambda: client.slo().objectives[2].samples == 4)
        before = client.slo()
    assert first.stop() == 0

    second = spawn_daemon(home, slo_min_samples=3)
    try:
        listener = Listener(second.socket)
        with DaemonClient(socket_path=second.socket) as client:
            wait_for(lambda: client.slo().objectives[2].samples == 4)  # refilled from requests.jsonl
            after = client.slo()
            assert [(r.objective, r.samples, r.value) for r in after.objectives] == [
                (r.objective, r.samples, r.value) for r in before.objectives
            ]
            assert after.alerts["oom"] == "firing"  # restored from alerts.jsonl...
            assert [a.key for a in client.status().alerts if a.key == "oom"] == ["oom"]
            client.chat(CHAT)
        hello = next(e for _, e in listener.seen if e.type == "hello")
        assert [a["key"] for a in hello.data["alerts"] if a["key"] == "oom"] == ["oom"]
        # ...and not announced again by the new daemon
        assert not [e for e in listener.drain(1.5) if e.type.startswith("alert.") and e.data["key"] == "oom"]
        listener.close()
    finally:
        second.stop()
