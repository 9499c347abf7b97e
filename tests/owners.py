"""Processes and sockets of this user or of another (``nobody``), for the tests of what trayllm trusts.

CI runs the suite as root, which may chown to anyone and drop to any uid; elsewhere those tests skip.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NOBODY = 65534

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")


@contextmanager
def sleeping(uid: int | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A `sleep` run as ``uid`` (default: this user), killed at the end."""
    process = subprocess.Popen(["sleep", "300"], user=uid, group=uid)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


HOLDER = (
    "import fcntl, sys, time; lock = open(sys.argv[1], 'a+'); fcntl.flock(lock, fcntl.LOCK_EX); "
    "print('holding', flush=True); time.sleep(300)"
)


@contextmanager
def holding(lock: Path) -> Iterator[subprocess.Popen[str]]:
    """A process of this user holding an flock on ``lock`` (as the daemon and the pid files do), killed at the end."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "holding\n"
        yield process
    finally:
        process.kill()
        process.wait()
        process.stdout.close()  # type: ignore[union-attr]


@contextmanager
def listening_as_nobody(path: Path) -> Iterator[Callable[[], bytes]]:
    """A server on the Unix socket ``path`` run by nobody; yields a function that returns what the first
    client sent it (its first read: b"" when the client closed without sending).

    Root binds the socket (nobody could not reach a test's tmp_path), and a forked child calls listen()
    as nobody: the kernel records who listens, and that is what a client's SO_PEERCRED reads.
    """
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    ready, report = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about fork with threads; the child only makes syscalls
        warnings.simplefilter("ignore", DeprecationWarning)
        child = os.fork()
    if child == 0:
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            server.listen(1)
            os.write(report, b"L")
            connection, _ = server.accept()
            os.write(report, connection.recv(65536))  # then it hangs up: a client that sent waits for nothing
        finally:
            os._exit(0)
    os.close(report)
    server.close()
    try:
        assert os.read(ready, 1) == b"L", "the server run by nobody did not start"

        def received() -> bytes:
            data = b""
            while chunk := os.read(ready, 65536):
                data += chunk
            return data

        yield received
    finally:
        os.close(ready)
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
