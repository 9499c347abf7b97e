"""The daemon's listening sockets, its one-instance lock, and the caller's identity.

The Unix socket lives in a 0700 directory of the user's own (trayllm.trust.private_dir) and is itself
0600; who is calling comes from the kernel (SO_PEERCRED), not from anything the client says.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pwd
import socket
from pathlib import Path
from typing import IO

from uvicorn.protocols.http.h11_impl import H11Protocol

from trayllm.errors import DaemonAlreadyRunning
from trayllm.trust import peer_credentials, private_dir


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class PeerCredProtocol(H11Protocol):
    """uvicorn's h11 protocol, with ``scope["client"]`` = (user name, pid) on a Unix socket.

    ASGI gives an app no access to the socket, so the peer's credentials are read when the
    connection is made, where uvicorn would otherwise find no address at all.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn's own narrowing
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_UNIX:
            pid, uid, _gid = peer_credentials(sock)
            self.client = (user_name(uid), pid)


class InstanceLock:
    """An flock next to the socket: held for the daemon's life, released by the kernel if it dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self, socket_path: Path) -> None:
        private_dir(self.path.parent)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            handle.close()
            raise DaemonAlreadyRunning(
                f"a trayllm daemon is already running (pid {pid}) on {socket_path}; "
                "stop it with `trayllm down` or choose another socket with TRAYLLM_SOCKET"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def bind_unix(path: Path) -> socket.socket:
    """Listen on ``path`` (0600, in a private dir); a stale socket left by a dead daemon is replaced.

    Only call this while holding the InstanceLock, which is what makes the old socket stale.
    """
    private_dir(path.parent)
    if path.is_socket():
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def bind_tcp(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(128)
    sock.setblocking(False)
    return sock
