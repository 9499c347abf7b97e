"""The user's systemd manager, through ``systemctl --user``."""

from __future__ import annotations

from trayllm.desktop.tools import available, run_tool
from trayllm.errors import TrayllmError


def user_manager_reachable() -> bool:
    """Whether ``systemctl --user`` can reach a running user manager.

    ``show-environment`` needs the manager itself (not just the unit files), and fails quickly without one:
    in a container, under ``sudo -u``, or on a system without systemd.
    """
    return available("systemctl") and run_tool(["systemctl", "--user", "show-environment"]) is None


def unit_active(unit: str) -> bool:
    """Whether ``unit`` is active (``systemctl --user is-active``); failed or waiting to restart is not."""
    return run_tool(["systemctl", "--user", "is-active", "--quiet", unit]) is None


def systemctl(*args: str) -> None:
    """Run ``systemctl --user ARGS``; a failure is a TrayllmError with systemctl's own message."""
    failure = run_tool(["systemctl", "--user", *args])
    if failure:
        raise TrayllmError(f"{failure}; see `systemctl --user status` and `journalctl --user -e`")
