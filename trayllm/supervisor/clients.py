"""The desktop clients (the tray, chat windows): launching one and waiting until it is up; `down`, clients first.

A client counts as up once it holds its instance lock (trayllm.supervisor.instances), which it takes only
once its toolkit is up: a tray without its system packages, or a window without a display, is then
reported with its log instead of vanishing silently.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from trayllm.client import DaemonClient
from trayllm.config import Settings
from trayllm.supervisor import instances
from trayllm.supervisor.daemon import DaemonSupervisor, StartFailed
from trayllm.supervisor.runners import DetachedRunner, trayllm_command

CLIENT_START_TIMEOUT_S = 60.0  # a cold PySide6 import on a slow disk takes a while

# How each desktop client is started: the tray, and the chat window (forced, as no terminal is attached).
CLIENT_ARGS: dict[instances.Role, tuple[str, ...]] = {"tray": ("tray",), "chat": ("chat", "--window")}


def has_display() -> bool:
    """Whether a window can open: an X or Wayland display on Linux; always elsewhere."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or not sys.platform.startswith("linux")


def launch_client(
    settings: Settings, role: instances.Role, timeout: float = CLIENT_START_TIMEOUT_S
) -> instances.Instance:
    """Start the tray or a chat window for ``settings``' daemon, detached (output in ``<role>.log``), and
    return once it holds its instance lock; StartFailed, with its log lines, if it exits or times out first."""
    started = DetachedRunner(trayllm_command(settings, *CLIENT_ARGS[role]), settings.state_path / f"{role}.log").start()
    deadline = time.monotonic() + timeout
    while True:
        found = [i for i in instances.running(settings, role) if i.pid == started.process.pid]
        if found:
            return found[0]
        if not started.running():
            raise StartFailed(f"the {role} {started.failure()}")
        if time.monotonic() > deadline:
            raise StartFailed(f"the {role} ({started.where()}) did not come up within {timeout:g} s")
        time.sleep(0.1)


def stop_all(settings: Settings, daemon_timeout: float, on_step: Callable[[str], None] = lambda _: None) -> None:
    """Stop the tray and chat windows of this daemon first (so they do not announce its going), then the daemon;
    ``on_step`` hears what each step did."""
    for instance in instances.stop(settings, instances.running(settings)):
        on_step(f"{'chat window closed' if instance.role == 'chat' else 'tray stopped'} (pid {instance.pid})")
    with DaemonClient.from_settings(settings) as client:
        pid = DaemonSupervisor(settings, client).stop(daemon_timeout)
    on_step(f"no daemon running on {settings.socket_path}" if pid is None else f"daemon stopped (pid {pid})")
