"""The pid-file locks `up` and `down` find the tray and chat windows by, with real processes holding them."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from waiting import wait_for

from trayllm import config, instances

HOLDER = textwrap.dedent("""
    import signal, sys, time
    from trayllm import config, instances
    if sys.argv[2] == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with instances.hold(config.load_settings(), sys.argv[1]):
            print("holding", flush=True)
            time.sleep(120)
    except instances.AlreadyRunning as exc:
        print(exc.message, flush=True)
""")


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


def hold_in_child(holders: list[subprocess.Popen[str]], role: str, mode: str = "polite") -> subprocess.Popen[str]:
    """A process holding ``role``, once it said "holding" (or why it could not)."""
    process, said = hold_saying(holders, role, mode)
    assert said == "holding"
    return process


def hold_saying(holders: list[subprocess.Popen[str]], role: str, mode: str = "polite") -> tuple[
        subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, role, mode], stdout=subprocess.PIPE, text=True)
    holders.append(process)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def test_running_lists_live_holders_and_forgets_killed_ones(holders: list[subprocess.Popen[str]]) -> None:
    settings = config.load_settings()
    tray = hold_in_child(holders, "tray")
    chats = [hold_in_child(holders, "chat") for _ in range(2)]
    assert {(i.role, i.pid) for i in instances.running(settings)} == {
        ("tray", tray.pid), ("chat", chats[0].pid), ("chat", chats[1].pid)}
    assert [i.pid for i in instances.running(settings, "tray")] == [tray.pid]

    chats[0].kill()  # no clean-up runs: the pid file stays, but its lock is gone with the process
    chats[0].wait()
    assert {i.pid for i in instances.running(settings, "chat")} == {chats[1].pid}
    assert sorted(p.name for p in instances.clients_dir(settings).iterdir()) == [
        f"chat-{chats[1].pid}.pid", "tray.pid"]  # the dead window's file was cleared away


def test_a_second_tray_is_refused_with_the_first_ones_pid(holders: list[subprocess.Popen[str]]) -> None:
    first = hold_in_child(holders, "tray")
    second, said = hold_saying(holders, "tray")
    assert said == f"the tray is already running (pid {first.pid})"
    assert second.wait(10) == 0
    first.kill()
    first.wait()
    hold_in_child(holders, "tray")  # the lock went with the killed one: the stale file is taken over


def test_stop_terms_then_kills_what_ignores_sigterm(holders: list[subprocess.Popen[str]]) -> None:
    settings = config.load_settings()
    polite = hold_in_child(holders, "chat")
    stubborn = hold_in_child(holders, "tray", "stubborn")
    found = instances.running(settings)
    assert {i.pid for i in found} == {polite.pid, stubborn.pid}
    instances.stop(settings, found, timeout=1.0)
    assert polite.wait(10) == -signal.SIGTERM
    assert stubborn.wait(10) == -signal.SIGKILL
    wait_for(lambda: not instances.running(settings), timeout=5)


def test_the_files_sit_by_the_socket_so_each_daemon_has_its_own(tmp_path, holders, monkeypatch) -> None:
    monkeypatch.setenv("TRAYLLM_SOCKET", str(tmp_path / "other.sock"))
    other = config.load_settings()
    hold_in_child(holders, "tray")
    monkeypatch.delenv("TRAYLLM_SOCKET")
    assert instances.clients_dir(other) == tmp_path / "other.sock.clients"
    assert [i.role for i in instances.running(other)] == ["tray"]
    assert instances.running(config.load_settings()) == []
