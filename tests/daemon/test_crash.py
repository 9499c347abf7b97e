"""A daemon killed with SIGKILL in the middle of a stream: the next daemon on the same home serves, and the
record file stays valid JSON lines, a line torn by the kill closed off on its own (issue "No request can
hurt another": kill -9 mid-stream, then restart)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from daemons import RunningDaemon, spawn_daemon
from waiting import wait_for

pytestmark = pytest.mark.slow


def chat(prompt: str, max_tokens: int, **extra: object) -> dict:
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0, **extra}


def _ids(records_path: Path) -> list[str]:
    ids = []
    for line in records_path.read_bytes().splitlines():
        try:
            ids.append(json.loads(line)["event"]["id"])
        except ValueError:
            continue
    return ids


def _log_line(daemon: RunningDaemon, message: str) -> dict | None:
    for line in daemon.log.read_text().splitlines():
        entry = json.loads(line) if line.startswith("{") else {}
        if entry.get("message") == message:
            return entry
    return None


def test_a_daemon_killed_mid_stream_restarts_and_its_records_stay_valid(tmp_path: Path, converted_model_dir) -> None:
    home = tmp_path / "home"
    running: list[RunningDaemon] = []
    try:
        first = spawn_daemon(home)
        running.append(first)
        records_path = first.records
        with first.client() as client:
            served = client.post("/v1/chat/completions", json=chat("Say hi.", 4))
            assert served.status_code == 200
            wait_for(lambda: served.headers["x-request-id"] in _ids(records_path), timeout=30)
            story = chat("Write a very long story about a lighthouse.", 1500, stream=True)
            with client.stream("POST", "/v1/chat/completions", json=story) as streamed:
                for count, _ in enumerate(streamed.iter_lines()):
                    if count > 4:
                        break
                first.process.kill()  # SIGKILL, with tokens still streaming
                first.process.wait(30)
        # Where the kill lands is chance: between two writes (the usual case) or inside one. Make the torn
        # case certain: if the kill left every line whole, leave what a kill inside a record's write leaves.
        whole = records_path.read_bytes()
        if whole.endswith(b"\n"):
            with records_path.open("ab") as f:
                f.write(whole.splitlines()[-1][:60])
        fragment = records_path.read_bytes().rpartition(b"\n")[2]
        assert fragment

        second = spawn_daemon(home)  # the same home: the same socket, lock and record file
        running.append(second)
        with second.client() as client:
            after = client.post("/v1/chat/completions", json=chat("Say hi again.", 4))
        assert after.status_code == 200
        new_id = after.headers["x-request-id"]
        wait_for(lambda: new_id in _ids(records_path), timeout=30)

        lines = records_path.read_bytes().split(b"\n")
        assert lines.pop() == b""  # ends with a whole line
        torn = []
        for line in lines:
            try:
                assert isinstance(json.loads(line), dict)
            except ValueError:
                torn.append(line)
        assert torn == [fragment]  # the one fragment, alone on its line; every other line a record
        assert json.loads(lines[-1])["event"]["id"] == new_id
        refill = wait_for(lambda: _log_line(second, "SLO windows refilled"), timeout=30)
        assert refill["skipped_lines"] == 1
    finally:
        for daemon in running:
            if daemon.process.poll() is None:
                daemon.process.kill()
                daemon.process.wait()


def test_a_lost_gpu_fails_the_request_and_the_daemon_exits_non_zero_for_its_supervisor(start_daemon) -> None:
    daemon = start_daemon(fault_injection=True)
    with daemon.client() as http:
        assert http.put("/v1/faults", json={"lose_device_at": "decode"}).status_code == 200
        failed = http.post("/v1/chat/completions", json=chat("Say hello.", 5))
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "engine_error"
    assert "restarting" in failed.json()["error"]["message"]
    assert daemon.process.wait(timeout=30) == 1  # systemd's Restart=on-failure starts a fresh process
    last = daemon.log.read_text().strip().splitlines()[-1]
    assert last.startswith("trayllm: error: the GPU stopped working (AcceleratorError: CUDA error: an illegal")
    assert last.endswith("exiting so that a fresh process can use the GPU")
    [record] = [json.loads(line) for line in daemon.records.read_text().splitlines()]
    assert record["event"]["id"] == failed.headers["x-request-id"] and record["error"]["type"] == "engine_error"
