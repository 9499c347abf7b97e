"""The pid-file locks `up` and `down` find the tray and chat windows by, with real processes holding them."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from owners import NOBODY, needs_root, sleeping
from waiting import wait_for

from trayllm import config, errors
from trayllm.supervisor import instances
from trayllm.supervisor.clients import stop_all

HOLDER = textwrap.dedent("""
    import signal, sys, time
    from trayllm import config
    from trayllm.supervisor import instances
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


def hold_saying(
    holders: list[subprocess.Popen[str]], role: str, mode: str = "polite"
) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, role, mode], stdout=subprocess.PIPE, text=True)
    holders.append(process)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def test_running_lists_live_holders_and_forgets_killed_ones(holders: list[subprocess.Popen[str]]) -> None:
    settings = config.load_settings()
    tray = hold_in_child(holders, "tray")
    chats = [hold_in_child(holders, "chat") for _ in range(2)]
    assert {(i.role, i.pid) for i in instances.running(settings)} == {
        ("tray", tray.pid),
        ("chat", chats[0].pid),
        ("chat", chats[1].pid),
    }
    assert [i.pid for i in instances.running(settings, "tray")] == [tray.pid]

    chats[0].kill()  # no clean-up runs: the pid file stays, but its lock is gone with the process
    chats[0].wait()
    assert {i.pid for i in instances.running(settings, "chat")} == {chats[1].pid}
    assert sorted(p.name for p in instances.clients_dir(settings).iterdir()) == [
        f"chat-{chats[1].pid}.pid",
        "tray.pid",
    ]  # the dead window's file was cleared away


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


@pytest.mark.parametrize("owner", [pytest.param(NOBODY, marks=needs_root), None], ids=["stranger", "mine"])
def test_a_pid_file_naming_a_process_that_does_not_hold_it_gets_nothing_signalled(owner: int | None) -> None:
    """The tray's file is locked (here, by the test) but names a `sleep`: of another user, or one of ours that
    holds no lock. `down` must neither list nor signal it."""
    settings = config.load_settings()
    with sleeping(owner) as victim:
        _make_clients_dir(settings)
        fd = os.open(instances.clients_dir(settings) / "tray.pid", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, f"{victim.pid}\n".encode())
            assert instances.running(settings) == []
            assert instances.stop(settings, [instances.Instance("tray", victim.pid)], timeout=1) == []
            said: list[str] = []
            stop_all(settings, 1, on_step=said.append)
            assert said == [f"no daemon running on {settings.socket_path}"]
        finally:
            os.close(fd)
        assert victim.poll() is None


@needs_root
def test_pid_files_in_a_folder_of_another_user_are_refused() -> None:
    settings = config.load_settings()
    folder = _make_clients_dir(settings)
    os.chown(folder, NOBODY, NOBODY)
    refusal = f"^{folder} is owned by uid {NOBODY}, not you"
    with pytest.raises(errors.Untrusted, match=refusal):
        instances.running(settings)
    with pytest.raises(errors.Untrusted, match=refusal), instances.hold(settings, "tray"):
        pass
    assert list(folder.iterdir()) == []


def _make_clients_dir(settings: config.Settings) -> Path:
    folder = instances.clients_dir(settings)
    folder.parent.mkdir(mode=0o700)
    folder.mkdir(mode=0o700)
    return folder
