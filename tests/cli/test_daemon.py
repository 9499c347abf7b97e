"""`trayllm daemon`, `up` and `down`: flags reach run_daemon, `up` waits or reports, `down` spares strangers."""

from __future__ import annotations

import signal
import sys
import types
from pathlib import Path

import pytest
from cli_runner import on, run
from fake_daemon import READY_STATUS, FakeDaemon, fake_daemon_fixture  # noqa: F401
from owners import NOBODY, holding, needs_root, sleeping

from trayllm import config
from trayllm.cli import daemon as daemon_commands


def test_up_with_a_running_daemon_waits_for_it_then_chats(fake_daemon: FakeDaemon):
    fake_daemon.statuses = [
        {**READY_STATUS, "state": "loading", "model": None, "load_progress": "converting 40%"},
        READY_STATUS,
    ]
    result = on(fake_daemon, "up", input="hi\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Echo: hi\n"
    assert "trayllm: daemon loading: converting 40%\n" in result.stderr
    assert "ready: fake-model on cpu" in result.stderr
    assert "started the daemon" not in result.stderr


def test_up_reports_a_daemon_that_dies_with_its_log(monkeypatch: pytest.MonkeyPatch):
    script = "import sys; print('loading...'); print('boom: no model at /x.gguf', flush=True); sys.exit(3)"
    monkeypatch.setattr(daemon_commands, "daemon_command", lambda settings: [sys.executable, "-c", script])
    log = config.load_settings().state_path / "daemon.log"
    log.parent.mkdir(parents=True)
    log.write_text("an old run\n")
    result = run("up", "--timeout", "30")
    assert result.exit_code == 1
    assert "trayllm: started the daemon" in result.stderr
    assert "trayllm: error: the daemon exited with status 3" in result.stderr
    assert "    boom: no model at /x.gguf" in result.stderr
    assert "an old run" not in result.stderr  # only this run's lines
    assert "an old run" in log.read_text()


def test_down_sends_sigterm_to_the_status_pid_holding_the_daemons_lock(fake_daemon: FakeDaemon):
    with holding(fake_daemon.socket_path.with_name("daemon.sock.lock")) as daemon:
        fake_daemon.statuses = [{**READY_STATUS, "pid": daemon.pid}]
        result = on(fake_daemon, "down", "--timeout", "10")
        assert result.exit_code == 0, result.stderr
        assert daemon.wait(10) == -signal.SIGTERM
    assert result.stderr == f"trayllm: daemon stopped (pid {daemon.pid})\n"


@pytest.mark.parametrize("owner", [pytest.param(NOBODY, marks=needs_root), None], ids=["stranger", "mine"])
def test_down_signals_no_status_pid_that_does_not_hold_the_daemons_lock(fake_daemon: FakeDaemon, owner: int | None):
    with sleeping(owner) as victim:
        fake_daemon.statuses = [{**READY_STATUS, "pid": victim.pid}]
        result = on(fake_daemon, "down", "--timeout", "10")
        assert victim.poll() is None
    assert result.exit_code == 1
    reason = (
        f"runs as uid {NOBODY}, not you"
        if owner
        else f"does not hold {fake_daemon.socket_path}.lock, so it is not the process that file is for"
    )
    assert result.stderr == f"trayllm: error: pid {victim.pid} {reason}: trayllm does not signal it\n"


def test_down_without_a_daemon_is_fine(tmp_path: Path):
    result = run("--socket", str(tmp_path / "none.sock"), "down")
    assert result.exit_code == 0
    assert "no daemon running" in result.stderr


def test_daemon_command_passes_flags_to_run_daemon(monkeypatch: pytest.MonkeyPatch):
    """`trayllm daemon` only builds Settings and hands them to trayllm.daemon.server.run_daemon."""
    seen = []
    fake_server = types.ModuleType("trayllm.daemon.server")
    fake_server.run_daemon = seen.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trayllm.daemon.server", fake_server)
    result = run("daemon", "--device", "cpu", "--max-batch", "2", "--no-warmup", "--listen", "127.0.0.1:8765")
    assert result.exit_code == 0, result.stderr
    (settings,) = seen
    assert (settings.device, settings.max_batch, settings.warmup, settings.listen) == (
        "cpu",
        2,
        False,
        "127.0.0.1:8765",
    )
