"""How a trayllm process is started in the background: as a detached child, or as a systemd user unit.

A runner has one method, ``start()``, which returns a handle: where the process is (for messages), whether it
still runs, and why it is gone. The supervisor waits on handles and never asks how the process was started,
so tests give it a fake runner (tests/fake_runner.py). Each child gets the caller's socket explicitly, so a
tray started for one daemon never talks to another, and its own log file in the state directory, so a start
that fails can be shown with its own lines. Where `trayllm desktop install` put the daemon's unit in place,
the daemon is started through systemd instead: it then restarts on failure and logs to the journal, and a
later login does not start a second one.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from trayllm.config import Settings, load_settings
from trayllm.errors import ConfigError, TrayllmError


class Handle(Protocol):
    """A process a runner started."""

    def where(self) -> str:
        """Where it runs and where its output goes, for a message."""
        ...

    def running(self) -> bool:
        """Whether it still runs."""
        ...

    def failure(self) -> str:
        """Why it is gone, to follow "the daemon " in an error line."""
        ...


class Runner(Protocol):
    def start(self) -> Handle:
        """Start the process; TrayllmError (one line) if it could not even be started."""
        ...


def trayllm_command(settings: Settings, *args: str) -> list[str]:
    """``python -m trayllm --socket <settings' socket> ARGS``, with this interpreter (a venv works)."""
    return [sys.executable, "-m", "trayllm", "--socket", str(settings.socket_path), *args]


def daemon_command(settings: Settings) -> list[str]:
    """The command line of a daemon serving ``settings``' socket."""
    return trayllm_command(settings, "daemon")


@dataclass(frozen=True)
class Detached:
    """A detached child, with where its output goes and how long that file was before it started."""

    process: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int

    def where(self) -> str:
        return f"pid {self.process.pid}, log {self.log_path}"

    def running(self) -> bool:
        return self.process.poll() is None

    def failure(self) -> str:
        """Its exit status and this run's last lines of output."""
        return f"exited with status {self.process.returncode}; last lines of {self.log_path}:\n{self.log_tail()}"

    def log_tail(self, lines: int = 15) -> str:
        """This run's last ``lines`` lines of output, indented for an error message."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self.log_offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "    (no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (the log is empty)"


@dataclass(frozen=True)
class DetachedRunner:
    """Runs ``command`` in its own session (it outlives the caller), its output appended to ``log_path``.

    A thread waits for the child, so whenever it ends it is reaped: the tray or a chat window that started a
    daemon would otherwise keep it as a zombie after `trayllm down` (and Python warns about a dropped Popen
    whose child still runs). ``running()`` and ``failure()`` read the status that wait sets.
    """

    command: list[str]
    log_path: Path

    def start(self) -> Detached:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            try:
                process = subprocess.Popen(
                    self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            except OSError as exc:  # no such program, not executable: a message, not a traceback in the tray
                raise TrayllmError(f"could not run {self.command[0]}: {exc.strerror or exc}") from None
        threading.Thread(target=process.wait, name=f"trayllm-reap-{process.pid}", daemon=True).start()
        return Detached(process, self.log_path, offset)


@dataclass(frozen=True)
class ViaSystemd:
    """A unit the user's systemd manager started for us."""

    unit: str

    def where(self) -> str:
        return f"systemd unit {self.unit}, log `journalctl --user -u {self.unit}`"

    def running(self) -> bool:
        """Active; a unit that failed, or waits to be restarted after a failure, is not."""
        from trayllm.desktop.systemd import unit_active

        return unit_active(self.unit)

    def failure(self) -> str:
        return f"failed under systemd; see `systemctl --user status {self.unit}` and `journalctl --user -u {self.unit}`"


@dataclass(frozen=True)
class SystemdRunner:
    """Starts ``unit`` through the user's systemd manager."""

    unit: str

    def start(self) -> ViaSystemd:
        from trayllm.desktop.systemd import systemctl

        systemctl("start", self.unit)
        return ViaSystemd(self.unit)


@dataclass(frozen=True)
class DaemonRunner:
    """The daemon's runner: its systemd unit when that is installed and would serve this socket, else a detached
    ``command``. The choice is made at each start, so a daemon already running costs no systemctl call."""

    settings: Settings
    command: list[str]

    def start(self) -> Detached | ViaSystemd:
        from trayllm.desktop.systemd import user_manager_reachable
        from trayllm.desktop.units import DAEMON_UNIT

        if _unit_serves(self.settings, DAEMON_UNIT) and user_manager_reachable():
            try:
                return SystemdRunner(DAEMON_UNIT).start()
            except TrayllmError as exc:
                raise TrayllmError(f"could not start the daemon's unit: {exc.message}") from None
        return DetachedRunner(self.command, self.settings.state_path / "daemon.log").start()


def daemon_runner(settings: Settings, command: list[str] | None = None) -> DaemonRunner:
    """How the daemon for ``settings`` is started; ``command`` (default: daemon_command) when not by systemd."""
    return DaemonRunner(settings, command or daemon_command(settings))


def _unit_serves(settings: Settings, unit: str) -> bool:
    """Whether the installed unit's daemon would listen on ``settings``' socket. The unit reads the config file
    but not this shell's TRAYLLM_* variables or flags: with another socket from those, it is not ours to start."""
    from trayllm.desktop.layout import UNITS_DIR, base_dir

    if not (base_dir("config") / UNITS_DIR / unit).is_file():
        return False
    try:
        return load_settings(environ={}).socket_path == settings.socket_path
    except ConfigError:
        return False
