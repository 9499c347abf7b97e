"""The daemon process itself: with only ``engine_url`` set it is a thin daemon that never imports torch."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from daemons import spawn_daemon
from fake_engine import FakeEngine
from inprocess_daemon import serve_engine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_daemon_with_only_engine_url_serves_without_importing_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    with serve_engine(
        FakeEngine, tcp=True, listen=listen, state_dir=str(tmp_path / "up"), token_file=str(tmp_path / "token")
    ) as upstream:
        monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # python -X importtime: each import on stderr
        daemon = spawn_daemon(
            tmp_path / "thin", engine_url=f"http://{listen}/v1", engine_api_key_file=upstream.settings.token_path
        )
        try:
            with daemon.client() as client:
                reply = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
            assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "hi"
        finally:
            assert daemon.stop() == 0
    imported = [
        line.rpartition("|")[2].strip()
        for line in daemon.log.read_text().splitlines()
        if line.startswith("import time:")
    ]
    assert "trayllm.engine.remote" in imported  # the log does hold the import trace
    assert [name for name in imported if name.partition(".")[0] in ("torch", "transformers")] == []
