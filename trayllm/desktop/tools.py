"""Running the external tools install and uninstall use (systemctl, the cache updaters): quietly, bounded in
time, and with a failure reduced to one line that can go into a message."""

from __future__ import annotations

import shutil
import subprocess

TIMEOUT_S = 60


def available(tool: str) -> bool:
    """Whether ``tool`` is on PATH."""
    return shutil.which(tool) is not None


def run_tool(command: list[str]) -> str | None:
    """Run ``command`` without a terminal; None when it succeeded, else why it failed, in one line."""
    try:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{' '.join(command)}` did not run ({exc})"
    if result.returncode == 0:
        return None
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return f"`{' '.join(command)}` failed with status {result.returncode}" + (f" ({lines[-1]})" if lines else "")
