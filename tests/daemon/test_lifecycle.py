"""One daemon per socket, stale sockets, SIGTERM draining, and loopback TCP with a bearer token."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta

import httpx
import pytest
from daemons import spawn_daemon
from waiting import wait_for

pytestmark = pytest.mark.slow


def test_second_daemon_on_the_same_socket_says_one_is_running(start_daemon) -> None:
    first = start_daemon()
    second = subprocess.run(
        [sys.executable, "-m", "trayllm", "daemon"], env=first.env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 1
    assert "already running" in second.stderr
    assert str(first.process.pid) in second.stderr
    assert first.status()["state"] == "ready", "the first daemon must be untouched"


def test_stale_socket_is_replaced(tmp_path, converted_model_dir) -> None:
    home = tmp_path / "stale"
    path = home / "xdg_runtime_dir" / "trayllm" / "daemon.sock"
    path.parent.mkdir(parents=True, mode=0o700)  # as a daemon made it: an open one would be refused
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # a socket file nobody listens on, as a crashed daemon leaves behind
    daemon = spawn_daemon(home)
    try:
        assert daemon.status()["state"] == "ready"
    finally:
        daemon.stop()


def test_socket_is_private(daemon) -> None:
    mode = daemon.socket.stat().st_mode & 0o777
    assert mode == 0o600
    assert daemon.socket.parent.stat().st_mode & 0o777 == 0o700


def test_sigterm_drains_in_flight_stream_and_removes_socket(start_daemon) -> None:
    daemon = start_daemon(shutdown_grace_s=30)
    body = {
        "messages": [{"role": "user", "content": "Write a story about a cat."}],
        "max_tokens": 40,
        "temperature": 0.8,
        "seed": 2,
        "stream": True,
    }
    lines: list[str] = []

    def consume() -> None:
        with daemon.client() as client, client.stream("POST", "/v1/chat/completions", json=body) as response:
            lines.extend(response.iter_lines())

    reader = threading.Thread(target=consume)
    reader.start()
    wait_for(lambda: daemon.status()["queue"]["in_flight"] == 1, timeout=30)
    daemon.process.send_signal(signal.SIGTERM)
    reader.join(120)
    assert daemon.process.wait(60) == 0
    assert lines[-1] == "data: [DONE]" or lines[-2:] == ["data: [DONE]", ""]
    assert any('"finish_reason":"length"' in line for line in lines), "the stream was cut instead of drained"
    assert not daemon.socket.exists()


def test_tcp_needs_the_token_and_a_loopback_host(start_daemon) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = start_daemon(listen=f"127.0.0.1:{port}")
    token_file = daemon.socket.parents[2] / "xdg_config_home" / "trayllm" / "token"
    token = token_file.read_text().strip()
    assert token_file.stat().st_mode & 0o777 == 0o600
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=60) as client:
        anonymous = client.get("/v1/status")
        wrong = client.get("/v1/status", headers={"Authorization": "Bearer nope"})
        rebinding = client.get("/v1/status", headers={"Authorization": f"Bearer {token}", "Host": "evil.example"})
        foreign_origin = client.get(
            "/v1/status", headers={"Authorization": f"Bearer {token}", "Origin": "http://evil.example"}
        )
        good = client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {token}"},
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
        )
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "authentication_error"
    assert wrong.status_code == 401
    assert rebinding.status_code == 403
    assert foreign_origin.status_code == 403
    assert good.status_code == 200, good.text
    assert good.headers["x-request-id"]


def test_every_log_line_is_ecs_json_with_a_zoned_timestamp(start_daemon) -> None:
    daemon = start_daemon()
    daemon.status()
    assert daemon.stop() == 0
    lines = daemon.log.read_text().splitlines()
    assert len(lines) >= 2, "the daemon logs at least its start and its stop"
    for line in lines:
        assert line.startswith("{"), (line, lines)
        doc = json.loads(line)
        assert {"@timestamp", "log.level", "log.logger", "message", "ecs.version"} <= doc.keys(), line
        stamp = datetime.fromisoformat(doc["@timestamp"].replace("Z", "+00:00"))
        assert stamp.utcoffset() == timedelta(0), line
