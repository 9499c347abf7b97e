"""Which trayllm desktop processes (the tray, chat windows) run for a daemon, so `up` and `down` can find them.

Each process holds an exclusive ``flock`` on its own pid file for as long as it lives. A pid file alone
goes stale when its process is killed or crashes, and the pid may then belong to somebody else; the
kernel drops a lock with its process, so "locked" is the only proof that the pid is still ours. The files
sit next to the daemon's socket (``daemon.sock.clients/``), so a second daemon on another socket has its
own set. A single-instance role (the tray) keeps one fixed file, which is also how a second tray, from
autostart and from `trayllm up` at once, learns it is not needed.

The folder and the socket's must be the user's own and private (trayllm.trust), and a pid counts only while
it is the user's process holding the file named for it: nobody else's pid file gets anything signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trayllm import trust
from trayllm.config import Settings
from trayllm.errors import TrayllmError, Untrusted

Role = Literal["tray", "chat"]
ROLES: tuple[Role, ...] = ("tray", "chat")
SINGLE: frozenset[Role] = frozenset({"tray"})


class AlreadyRunning(TrayllmError):
    """A single-instance process was asked to start while one holds its lock."""

    def __init__(self, role: Role, pid: int) -> None:
        super().__init__(f"the {role} is already running (pid {pid})")
        self.role = role
        self.pid = pid


@dataclass(frozen=True)
class Instance:
    role: Role
    pid: int


def clients_dir(settings: Settings) -> Path:
    socket = settings.socket_path
    return socket.with_name(socket.name + ".clients")


def _file(settings: Settings, role: Role, pid: int) -> Path:
    return clients_dir(settings) / (f"{role}.pid" if role in SINGLE else f"{role}-{pid}.pid")


@contextlib.contextmanager
def hold(settings: Settings, role: Role) -> Iterator[None]:
    """Mark this process as a running ``role`` until the block ends; AlreadyRunning for a taken single role."""
    path = _file(settings, role, os.getpid())
    trust.private_dir(settings.socket_path.parent)
    trust.private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by children (PEP 446)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(role, _read_pid(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            if role not in SINGLE:  # the fixed file of a single role stays: a newcomer may already have it open
                with contextlib.suppress(OSError):
                    path.unlink()
    finally:
        os.close(fd)


def running(settings: Settings, role: Role | None = None) -> list[Instance]:
    """The live processes (of ``role``, or all), oldest file first; stale files of dead ones are removed.

    Untrusted if the folder (or the socket's) is not the user's private one.
    """
    folder = clients_dir(settings)
    if not os.path.lexists(folder):
        return []
    trust.check_private_dir(settings.socket_path.parent)
    trust.check_private_dir(folder)
    found: list[Instance] = []
    for path in sorted(folder.glob(f"{role}*.pid" if role else "*.pid"), key=_mtime):
        kind = _role_of(path)
        if kind is None:
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # locked: its owner is alive
            pid = _read_pid(fd)
            if pid and _holds_own_file(settings, kind, pid):
                found.append(Instance(kind, pid))
        else:
            if kind not in SINGLE:
                with contextlib.suppress(OSError):
                    path.unlink()
        finally:
            os.close(fd)
    return found


def stop(settings: Settings, instances: list[Instance], timeout: float = 10.0) -> list[Instance]:
    """SIGTERM each instance, wait until it exits, SIGKILL what outlives ``timeout``; returns those signalled.

    Only an instance that is still the user's process holding its pid file is signalled, pinned by a
    pidfd (trust.LockHolder), so neither signal reaches a process that got its pid after it exited.
    """
    holders: dict[Instance, trust.LockHolder] = {}
    for instance in instances:
        try:
            holders[instance] = trust.LockHolder(instance.pid, _file(settings, instance.role, instance.pid))
        except (ProcessLookupError, Untrusted):
            continue
    try:
        for holder in holders.values():
            holder.send(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for holder in holders.values():
            if not holder.wait(deadline - time.monotonic()):
                holder.send(signal.SIGKILL)
    finally:
        for holder in holders.values():
            holder.close()
    return list(holders)


def _holds_own_file(settings: Settings, role: Role, pid: int) -> bool:
    """Whether ``pid`` is the user's process holding the pid file named for it (a file can name any pid)."""
    try:
        trust.check_lock_holder(pid, _file(settings, role, pid))
    except Untrusted:
        return False
    return True


def _role_of(path: Path) -> Role | None:
    stem = path.name.split(".")[0].split("-")[0]
    return next((role for role in ROLES if role == stem), None)


def _read_pid(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0)
    except ValueError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
