"""What `trayllm up` and `trayllm down` do: bring the daemon, the tray and a chat window up, and all of them down.

Kept apart from the CLI so the steps are plain functions: the CLI only prints what they report.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from trayllm import errors, instances, launcher, trust
from trayllm.client import DaemonClient
from trayllm.config import Settings

CLIENT_START_TIMEOUT_S = 60.0  # a cold PySide6 import on a slow disk takes a while


class StartFailed(errors.TrayllmError):
    """A process `up` started exited (or never came up); the message carries its log lines."""


def wait_until_answering(client: DaemonClient, started: launcher.Started, timeout: float) -> None:
    """Wait until the daemon just started answers (loading counts); StartFailed saying why if it dies first."""
    deadline = time.monotonic() + timeout
    while not client.health():
        if not started.running():
            raise StartFailed(f"the daemon {started.failure()}")
        if time.monotonic() > deadline:
            raise StartFailed(f"the daemon ({started.where()}) did not answer within {timeout:g} s")
        time.sleep(0.1)


def start_client(settings: Settings, role: instances.Role,
                 timeout: float = CLIENT_START_TIMEOUT_S) -> instances.Instance:
    """Start the tray or a chat window detached, and wait until it holds its instance lock.

    The lock is taken once the process has its toolkit up (see instances.hold's callers), so a tray
    without its system packages, or a window without a display, is reported here with its log
    instead of vanishing silently.
    """
    started = launcher.start_client(settings, role)
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
        try:
            pid = client.status().pid
        except errors.DaemonNotRunning:
            on_step(f"no daemon running on {settings.socket_path}")
            return
    stop_daemon(settings, pid, daemon_timeout)
    on_step(f"daemon stopped (pid {pid})")


def stop_daemon(settings: Settings, pid: int, timeout: float) -> None:
    """SIGTERM the daemon and wait until it is gone (its in-flight requests get shutdown_grace_s to finish).

    ``pid`` is the daemon's word, so it is signalled only while it is the user's process holding the
    daemon's lock (Untrusted otherwise), through a pidfd that no later owner of the pid shares.
    """
    try:
        daemon = trust.LockHolder(pid, settings.lock_path)
    except ProcessLookupError:
        return
    with daemon:
        daemon.send(signal.SIGTERM)
        if not daemon.wait(timeout):  # the socket goes first; the process may still be flushing records
            raise errors.TrayllmError(f"the daemon (pid {pid}) is still running {timeout:g} s after SIGTERM")
