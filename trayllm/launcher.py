"""Starting trayllm processes in the background: the daemon, the tray, a chat window.

Shared by `trayllm up`, the tray's "Start daemon" and "Open chat". Each child gets the caller's socket
explicitly, so a tray started for one daemon never talks to another, and its own log file in the
state directory, so a start that fails can be shown with its own lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from trayllm.config import Settings


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
class Started:
    """A detached child, with where its output goes and how long that file was before it started."""

    process: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int

    def log_tail(self, lines: int = 15) -> str:
        """This run's last ``lines`` lines of output, indented for an error message."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self.log_offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "    (no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (the log is empty)"


def start_detached(command: list[str], settings: Settings, log_name: str = "daemon.log") -> Started:
    """Start ``command`` in its own session (it outlives the caller), output appended to ``log_name``."""
    log_path = settings.state_path / log_name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return Started(process, log_path, offset)
