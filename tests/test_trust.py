"""What trayllm trusts: its own private directories, and pids that are its user's and hold their lock."""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from owners import NOBODY, holding, needs_root, sleeping

from trayllm import trust
from trayllm.errors import Untrusted


@pytest.fixture
def tight_umask() -> Iterator[None]:
    old = os.umask(0o277)  # even the owner's write bit masked off
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return os.lstat(path).st_mode & 0o7777


def test_a_missing_dir_is_made_0700_whatever_the_umask(tmp_path: Path, tight_umask: None) -> None:
    path = tmp_path / "a" / "run"
    trust.private_dir(path)
    assert mode(path) == 0o700
    trust.private_dir(path)  # now it is there, and it is fine


def test_a_symlink_is_refused_even_to_a_private_dir(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "run").symlink_to(tmp_path / "real")
    with pytest.raises(Untrusted) as refused:
        trust.private_dir(tmp_path / "run")
    assert refused.value.message == (
        f"{tmp_path / 'run'} is a symlink: remove it, or choose another place with XDG_RUNTIME_DIR or TRAYLLM_SOCKET"
    )


@needs_root
def test_a_dir_of_another_user_is_refused_and_left_alone(tmp_path: Path) -> None:
    squatted = tmp_path / "run"
    squatted.mkdir(mode=0o755)
    os.chown(squatted, NOBODY, NOBODY)
    with pytest.raises(Untrusted, match=f"^{squatted} is owned by uid {NOBODY}, not you: remove it"):
        trust.private_dir(squatted)
    assert (os.lstat(squatted).st_uid, mode(squatted)) == (NOBODY, 0o755)


def test_an_open_dir_trayllm_did_not_make_is_refused_not_chmodded(tmp_path: Path) -> None:
    existing = tmp_path / "run"
    existing.mkdir()
    existing.chmod(0o755)
    with pytest.raises(Untrusted, match=r"has mode 0755, not 0700 \(`chmod 700` it if it is yours alone\)"):
        trust.private_dir(existing)
    assert mode(existing) == 0o755


def test_a_file_is_not_a_dir(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("")
    with pytest.raises(Untrusted, match="is not a directory"):
        trust.check_private_dir(tmp_path / "run")


def test_the_lock_holder_is_pinned_signalled_and_seen_to_exit(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with holding(lock) as holder:
        trust.check_lock_holder(holder.pid, lock)
        with trust.LockHolder(holder.pid, lock) as pinned:
            assert not pinned.wait(0)
            pinned.send(signal.SIGTERM)
            assert pinned.wait(10)  # exited, though nobody reaped it yet
        assert holder.wait() == -signal.SIGTERM


def test_a_pid_of_this_user_without_the_lock_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held, but here in the test, not by the sleep
        with sleeping() as process:
            with pytest.raises(Untrusted) as refused:
                trust.LockHolder(process.pid, lock)
            assert refused.value.message == (
                f"pid {process.pid} does not hold {lock}, so it is not the process "
                "that file is for: trayllm does not signal it"
            )
            assert process.poll() is None
    finally:
        os.close(fd)


@needs_root
def test_a_pid_of_another_user_is_refused(tmp_path: Path) -> None:
    with sleeping(NOBODY) as stranger:
        with pytest.raises(Untrusted) as refused:
            trust.LockHolder(stranger.pid, tmp_path / "x.lock")
        assert refused.value.message == f"pid {stranger.pid} runs as uid {NOBODY}, not you: trayllm does not signal it"
        assert stranger.poll() is None


def test_a_pid_that_is_gone_is_looked_up_in_vain(tmp_path: Path) -> None:
    with sleeping() as process:
        pass
    with pytest.raises(ProcessLookupError):
        trust.LockHolder(process.pid, tmp_path / "x.lock")
