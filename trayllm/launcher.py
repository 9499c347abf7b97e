"""Starting trayllm processes in the background: the daemon, the tray, a chat window.

Shared by `trayllm up`, the tray's "Start daemon" and "Open chat", and the chat window's Start button. Each
child gets the caller's socket explicitly, so a tray started for one daemon never talks to another, and its
own log file in the state directory, so a start that fails can be shown with its own lines. Where
`trayllm desktop install` put the daemon's systemd unit in place, the daemon is started through systemd
instead: it then restarts on failure and logs to the journal, and a later login does not start a second one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from trayllm.config import Settings, load_settings
from trayllm.errors import ConfigError, TrayllmError
from trayllm.instances import Role

# How each desktop client is started: the tray, and the chat window (forced, as no terminal is attached).
CLIENT_ARGS: dict[Role, tuple[str, ...]] = {"tray": ("tray",), "chat": ("chat", "--window")}


def trayllm_command(settings: Settings, *args: str) -> list[str]:
    """``python -m trayllm --socket <settings' socket> ARGS``, with this interpreter (a venv works)."""
    return [sys.executable, "-m", "trayllm", "--socket", str(settings.socket_path), *args]


def daemon_command(settings: Settings) -> list[str]:
    """The command line of a daemon serving ``settings``' socket."""
    return trayllm_command(settings, "daemon")


def has_display() -> bool:
    """Whether a window can open: an X or Wayland display on Linux; always elsewhere."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or not sys.platform.startswith("linux")


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
        """Why it is gone: its exit status and this run's last lines of output."""
        return (f"exited with status {self.process.returncode}; last lines of {self.log_path}:\n"
                f"{self.log_tail()}")

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


Started = Detached | ViaSystemd


def start_detached(command: list[str], settings: Settings, log_name: str = "daemon.log") -> Detached:
    """Start ``command`` in its own session (it outlives the caller), output appended to ``log_name``."""
    log_path = settings.state_path / log_name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return Detached(process, log_path, offset)


def start_client(settings: Settings, role: Role) -> Detached:
    """Start the tray or a chat window for ``settings``' daemon, detached, its output in ``<role>.log``."""
    return start_detached(trayllm_command(settings, *CLIENT_ARGS[role]), settings, f"{role}.log")


def start_daemon(settings: Settings, command: list[str] | None = None) -> Started:
    """Start the daemon for ``settings``: through its systemd unit when that is installed and would serve this
    socket, else ``command`` (default: daemon_command) as a detached child."""
    from trayllm.desktop.systemd import systemctl, user_manager_reachable
    from trayllm.desktop.units import DAEMON_UNIT

    if _unit_serves(settings, DAEMON_UNIT) and user_manager_reachable():
        try:
            systemctl("start", DAEMON_UNIT)
        except TrayllmError as exc:
            raise TrayllmError(f"could not start the daemon's unit: {exc.message}") from None
        return ViaSystemd(DAEMON_UNIT)
    return start_detached(command or daemon_command(settings), settings)


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
