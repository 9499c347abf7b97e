"""DaemonSupervisor: start the daemon, wait until it answers or is ready, stop it, restart it.

There is one way to start the daemon: `trayllm up`, the tray's "Start daemon" and the chat window's
Start button all call ``bring_up`` and then, where they need the model, ``wait_ready``. So each learns
the outcome the same way: the ready status, or a TrayllmError whose message is the line `trayllm up`
prints (a daemon that exited comes with its log lines). The tray and the window call them off their UI
thread (``start_and_wait_ready``).

How the process is started is the runner's business (trayllm.supervisor.runners); the supervisor only
watches the handle it got back, and learns everything else from the daemon's own answers, so a test can
give it a fake runner and a client of a fake daemon.
"""

from __future__ import annotations

import functools
import signal
import time
from collections.abc import Callable

from trayllm import api_status, errors, trust
from trayllm.client import DaemonClient
from trayllm.config import Settings
from trayllm.supervisor.runners import Handle, Runner, daemon_runner

START_TIMEOUT_S = 600.0  # what `trayllm up --timeout` defaults to: the first run converts the model

Say = Callable[[str], None]
Terminate = Callable[[int, float], None]  # (pid, timeout): signal the daemon, wait until it is gone


class StartFailed(errors.TrayllmError):
    """A process the supervisor started exited (or never came up); the message carries its log lines."""


def _quiet(_line: str) -> None:
    """The default ``say``: a caller that shows no progress."""


class DaemonSupervisor:
    """Starts, waits for, stops and restarts the daemon that ``client`` talks to.

    ``started`` is the handle of the daemon this supervisor started (None while it started none): the waits
    watch it, so a daemon that dies while loading is reported with why, not as a timeout.
    """

    def __init__(
        self,
        settings: Settings,
        client: DaemonClient,
        *,
        runner: Runner | None = None,
        terminate: Terminate | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.runner = runner or daemon_runner(settings)
        self.terminate = terminate or functools.partial(terminate_daemon, settings)
        self.started: Handle | None = None

    def start(self) -> Handle:
        """Start a daemon with the runner, whether or not one answers already (see bring_up)."""
        self.started = self.runner.start()
        return self.started

    def bring_up(self, timeout: float, say: Say = _quiet) -> None:
        """Start the daemon unless one answers, ``say`` which it was, and return once it answers (loading counts).

        StartFailed if the one started exits first, or does not answer within ``timeout`` seconds.
        """
        if self.client.health():
            say(f"daemon already running on {self.settings.socket_path}")
            return
        started = self.start()
        say(f"started the daemon ({started.where()})")
        self.wait_answering(timeout)

    def wait_answering(self, timeout: float) -> None:
        """Return once the daemon answers (loading counts).

        Without a daemon of its own to watch, one that does not answer now is DaemonNotRunning with the
        client's usual message; the one it started gets ``timeout`` seconds, and StartFailed if it dies first.
        """
        started = self.started
        if started is None:
            if not self.client.health():
                self.client.status()  # raises DaemonNotRunning, saying where it looked
            return
        deadline = time.monotonic() + timeout
        while not self.client.health():
            if not started.running():
                raise StartFailed(f"the daemon {started.failure()}")
            if time.monotonic() > deadline:
                raise StartFailed(f"the daemon ({started.where()}) did not answer within {timeout:g} s")
            time.sleep(0.1)

    def wait_ready(
        self, timeout: float, on_progress: Callable[[api_status.DaemonStatus], None] | None = None
    ) -> api_status.DaemonStatus:
        """The daemon's status once its model is ready; ``on_progress`` sees each new state while it loads.

        ModelLoadError if loading failed, NotReady after ``timeout`` seconds of answering but not ready,
        StartFailed (with its log lines) if the daemon this supervisor started exits first, DaemonNotRunning if
        none answers. The daemon this supervisor started gets ``timeout`` seconds to answer first.
        """
        self.wait_answering(timeout)
        started = self.started
        try:
            return self.client.wait_ready(
                timeout, on_progress=on_progress, alive=None if started is None else started.running
            )
        except errors.DaemonNotRunning:
            if started is None or started.running():
                raise
            raise StartFailed(f"the daemon {started.failure()}") from None

    def stop(self, timeout: float) -> int | None:
        """SIGTERM the daemon that answers and return its pid once it is gone; None when none answers."""
        try:
            pid = self.client.status().pid
        except errors.DaemonNotRunning:
            return None
        self.terminate(pid, timeout)
        self.started = None
        return pid

    def restart(self, timeout: float, say: Say = _quiet) -> api_status.DaemonStatus:
        """Stop the daemon (if one answers), start a fresh one, and return its status once it is ready.

        The old daemon is gone before the new one starts, so the new one does not find the socket taken.
        """
        pid = self.stop(timeout)
        if pid is not None:
            say(f"daemon stopped (pid {pid})")
        self.bring_up(timeout, say)
        return self.wait_ready(timeout)


def terminate_daemon(settings: Settings, pid: int, timeout: float) -> None:
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


def start_and_wait_ready(settings: Settings, timeout: float = START_TIMEOUT_S) -> api_status.DaemonStatus:
    """`trayllm up`'s start for the tray and the chat window: bring the daemon up and wait until it is ready.

    It blocks, so they call it off their UI thread; TrayllmError carries the line `trayllm up` would print.
    """
    with DaemonClient.from_settings(settings) as client:
        supervisor = DaemonSupervisor(settings, client)
        supervisor.bring_up(timeout)
        return supervisor.wait_ready(timeout)
