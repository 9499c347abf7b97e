"""Trust nobody's directory, socket or process: what trayllm checks before it relies on one.

Without XDG_RUNTIME_DIR the socket lives in /tmp/trayllm-<uid>, a name any user can take first. Whoever
does could serve a fake daemon there (and read the prompts sent to it) or plant pid files for
`trayllm down` to signal. So a directory that holds the socket, its lock or the pid files must be the
user's own, 0700 and not a symlink (trayllm chmods only a directory it has just made); a client asks the
kernel who listens on the socket (SO_PEERCRED) before it sends a byte; and a pid is signalled only when it
is the user's process holding the lock that names it, through a pidfd, so a pid the system handed to
another process meanwhile is never hit.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import stat
import struct
from pathlib import Path

from trayllm.errors import Untrusted

_UCRED = struct.Struct("3i")  # pid, uid, gid
_ELSEWHERE = "choose another place with XDG_RUNTIME_DIR or TRAYLLM_SOCKET"


def private_dir(path: Path) -> None:
    """Make ``path`` 0700 if it is missing; if it was there, check it is the user's own and private instead.

    An existing directory is never chmodded: one that another user made, or that is open to others,
    is refused rather than adopted.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    else:
        os.chmod(path, 0o700)  # the umask may have taken bits the owner needs
    check_private_dir(path)


def check_private_dir(path: Path) -> None:
    """Untrusted unless ``path`` (not followed if it is a symlink) is a directory of this user's, mode 0700."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symlink"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif info.st_uid != os.getuid():
        problem = f"is owned by uid {info.st_uid}, not you"
    elif info.st_mode & 0o077:
        problem = f"has mode {stat.S_IMODE(info.st_mode):04o}, not 0700 (`chmod 700` it if it is yours alone)"
    else:
        return
    raise Untrusted(f"{path} {problem}: remove it, or {_ELSEWHERE}")


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket, as the kernel recorded them."""
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return pid, uid, gid


def check_peer(sock: socket.socket, path: str) -> None:
    """Untrusted unless the daemon listening on ``path`` (``sock``, just connected) runs as this user."""
    _pid, uid, _gid = peer_credentials(sock)
    if uid != os.getuid():
        raise Untrusted(f"the daemon on {path} runs as uid {uid}, not you: trayllm sent it nothing; {_ELSEWHERE}")


def check_lock_holder(pid: int, lock: Path) -> None:
    """Untrusted unless ``pid`` is this user's process and holds the flock on ``lock`` itself.

    A pid file, or a daemon's word, names a pid; only the lock proves the pid is still that process.
    """
    uids = _uids_of(pid)
    if uids is None:
        raise Untrusted(f"pid {pid} is gone: trayllm does not signal it")
    stranger = next((uid for uid in uids if uid != os.getuid()), None)
    if stranger is not None:
        raise Untrusted(f"pid {pid} runs as uid {stranger}, not you: trayllm does not signal it")
    if not _holds_flock(pid, lock):
        raise Untrusted(
            f"pid {pid} does not hold {lock}, so it is not the process that file is for: trayllm does not signal it"
        )


class LockHolder:
    """This user's process that holds the flock on a lock file, pinned by a pidfd until ``close``.

    The pidfd is opened before the check, so the process checked is the one every signal reaches;
    once it exits the pidfd reaches nothing, whoever gets its pid next.
    """

    def __init__(self, pid: int, lock: Path) -> None:
        """ProcessLookupError if ``pid`` is gone (or goes while checked); Untrusted if it fails the check."""
        self.pid = pid
        self._pidfd = os.pidfd_open(pid)
        try:
            check_lock_holder(pid, lock)
        except Untrusted:
            gone = self.wait(0)
            self.close()
            if gone:
                raise ProcessLookupError(pid) from None
            raise

    def send(self, signum: signal.Signals) -> None:
        """Signal the process; nothing happens if it has exited."""
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._pidfd, signum)

    def wait(self, timeout: float) -> bool:
        """Whether the process exited within ``timeout`` seconds (an unreaped zombie has exited)."""
        readable, _, _ = select.select([self._pidfd], [], [], max(timeout, 0.0))
        return bool(readable)

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def __enter__(self) -> LockHolder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _uids_of(pid: int) -> tuple[int, int] | None:
    """The real and effective uid of ``pid`` (both must be the user's), or None if there is no such process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    real, effective = (int(field) for field in status.split("\nUid:", 1)[1].split()[:2])
    return real, effective


def _holds_flock(pid: int, lock: Path) -> bool:
    """Whether one of ``pid``'s descriptors is ``lock``, opened with an flock held through it.

    /proc/<pid>/fdinfo lists the locks held through that descriptor's open file; a waiter is not listed.
    """
    try:
        wanted = os.stat(lock)
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # no lock file, the process is gone, or its descriptors are not ours to see
        return False
    for fd in descriptors:
        try:
            opened = os.stat(f"/proc/{pid}/fd/{fd}")
            if (opened.st_dev, opened.st_ino) != (wanted.st_dev, wanted.st_ino):
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:  # closed meanwhile
            continue
        if any(line.startswith("lock:") and " FLOCK " in line and "->" not in line for line in info.splitlines()):
            return True
    return False
