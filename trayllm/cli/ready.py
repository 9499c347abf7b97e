"""Waiting for the daemon to be ready, with its loading progress on stderr (`up`, `chat`, `reload`, `bench`)."""

from __future__ import annotations

import click

from trayllm import api_status
from trayllm.supervisor.daemon import DaemonSupervisor
from trayllm.terminal_text import one_line


def show_progress(status: api_status.DaemonStatus) -> None:
    """One stderr line for a state the daemon passes through while it loads."""
    progress = f": {status.load_progress}" if status.load_progress else ""
    click.echo(one_line(f"trayllm: daemon {status.state}{progress}"), err=True)


def ensure_ready(supervisor: DaemonSupervisor, timeout: float) -> api_status.DaemonStatus:
    """The daemon's status once ready; waits (showing progress) if it is still loading.

    A daemon this supervisor started that dies while loading is reported with its log lines (StartFailed); with
    none started and none answering, DaemonNotRunning with the usual message.
    """
    seen: list[api_status.DaemonStatus] = []

    def progress(status: api_status.DaemonStatus) -> None:
        if seen or status.state != "ready":  # quiet when it was ready all along
            show_progress(status)
        seen.append(status)

    return supervisor.wait_ready(timeout, on_progress=progress)
