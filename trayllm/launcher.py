"""Starting a detached daemon, shared by `trayllm up` and the tray's "Start daemon"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from trayllm.config import Settings


def daemon_command(settings: Settings) -> list[str]:
    """The command line of a daemon serving ``settings``' socket."""
    return [sys.executable, "-m", "trayllm", "--socket", str(settings.socket_path), "daemon"]


def start_detached(command: list[str], settings: Settings) -> tuple[subprocess.Popen[bytes], Path, int]:
    """Start ``command`` in its own session (it outlives the caller), output appended to daemon.log.

    Returns the process, the log's path and the log's size before the start, so a caller whose daemon died
    can show just this run's lines.
    """
    log_path = settings.state_path / "daemon.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return process, log_path, offset
