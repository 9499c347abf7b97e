"""The runners. The daemon's starts it through systemd when `trayllm desktop install` put the unit in place and
that unit serves this socket, else as a detached child; a start that cannot happen is one line; a detached
child is reaped when it ends. systemctl is tests/fake_systemctl.py (see there why)."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import fake_systemctl
import pytest
from waiting import wait_for

from trayllm import config, errors
from trayllm.supervisor.runners import Detached, DetachedRunner, ViaSystemd, daemon_runner


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The stand-in systemctl first on PATH; yields the file its calls are written to. Kills what it started."""
    fake_systemctl.install(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMCTL_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setenv("FAKE_SYSTEMCTL_STATE", str(tmp_path / "units"))
    (tmp_path / "calls.log").touch()
    yield tmp_path / "calls.log"
    for pid_file in (tmp_path / "units").glob("*.pid"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def install_unit(exec_start: str) -> None:
    units = config.xdg_config_home() / "systemd" / "user"
    units.mkdir(parents=True)
    (units / "trayllm.service").write_text(f"[Service]\nExecStart={exec_start}\n")


def test_without_the_unit_the_daemon_is_a_detached_child(systemd: Path) -> None:
    settings = config.load_settings()
    started = daemon_runner(settings, ["/bin/sleep", "30"]).start()
    try:
        assert isinstance(started, Detached) and started.running()
        assert systemd.read_text() == ""
    finally:
        started.process.kill()
        started.process.wait()


def test_with_the_unit_systemd_starts_it_and_its_end_is_noticed(systemd: Path) -> None:
    install_unit("/bin/sleep 30")
    started = daemon_runner(config.load_settings(), ["/bin/false"]).start()
    assert started == ViaSystemd("trayllm.service")
    assert systemd.read_text().splitlines() == ["--user show-environment", "--user start trayllm.service"]
    assert started.running()
    os.kill(int((systemd.parent / "units" / "trayllm.service.pid").read_text()), signal.SIGKILL)
    wait_for(lambda: not started.running(), timeout=10)
    assert started.failure() == (
        "failed under systemd; see `systemctl --user status trayllm.service` and `journalctl --user -u trayllm.service`"
    )
    assert started.where() == "systemd unit trayllm.service, log `journalctl --user -u trayllm.service`"


def test_a_unit_for_another_socket_is_left_alone(systemd: Path, tmp_path: Path, monkeypatch) -> None:
    """The unit reads the config file, not this shell's TRAYLLM_SOCKET: a daemon for that socket is ours to start."""
    install_unit("/bin/sleep 30")
    monkeypatch.setenv("TRAYLLM_SOCKET", str(tmp_path / "elsewhere.sock"))
    started = daemon_runner(config.load_settings(), ["/bin/sleep", "30"]).start()
    try:
        assert isinstance(started, Detached)
        assert "start" not in systemd.read_text()
    finally:
        assert isinstance(started, Detached)
        started.process.kill()
        started.process.wait()


def test_a_unit_that_systemd_cannot_start_is_one_line_naming_it(systemd: Path) -> None:
    units = config.xdg_config_home() / "systemd" / "user"
    units.mkdir(parents=True)
    (units / "trayllm.service").write_text("[Service]\n")  # the stand-in fails `start` on a unit with no ExecStart=
    with pytest.raises(
        errors.TrayllmError,
        match=r"^could not start the daemon's unit: `systemctl --user start "
        r"trayllm.service` failed with status 1 \(trayllm.service has no ",
    ):
        daemon_runner(config.load_settings(), ["/bin/sleep", "30"]).start()


def test_a_program_that_cannot_run_is_a_one_line_error_not_an_oserror(tmp_path: Path) -> None:
    """The tray and the chat window report a TrayllmError; an OSError would end their worker thread unheard."""
    runner = DetachedRunner([str(tmp_path / "no-such-python"), "-m", "trayllm"], tmp_path / "state" / "daemon.log")
    with pytest.raises(errors.TrayllmError, match=rf"^could not run {tmp_path}/no-such-python: No such file"):
        runner.start()


def test_a_detached_child_is_reaped_when_it_ends_though_nobody_waits_for_it(tmp_path: Path) -> None:
    """The tray and the chat window drop the handle of the daemon they started: when it ends, it must not stay a
    zombie of theirs (nor may dropping a Popen whose child runs warn)."""
    started = DetachedRunner([sys.executable, "-c", "import time; time.sleep(0.5)"], tmp_path / "child.log").start()
    pid = started.process.pid
    del started
    gc.collect()
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=10)  # a zombie keeps its /proc entry
