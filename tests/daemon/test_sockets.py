"""The daemon's socket and lock go only into a directory of the user's own: made 0700, or refused.

The finding: with XDG_RUNTIME_DIR unset the socket dir is /tmp/trayllm-<uid>, which another user can make
first; the daemon used to adopt (and chmod) whatever was there, and whatever dir held a configured socket.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from owners import NOBODY, needs_root

from trayllm import config
from trayllm.daemon.sockets import InstanceLock, bind_unix
from trayllm.errors import Untrusted


def test_the_runtime_dir_is_made_private_and_the_socket_0600() -> None:
    path = config.load_settings().socket_path
    with bind_unix(path):
        assert os.lstat(path.parent).st_mode & 0o7777 == 0o700
        assert path.stat().st_mode & 0o777 == 0o600


@needs_root
def test_a_runtime_dir_made_by_another_user_is_refused_before_anything_is_put_in_it() -> None:
    settings = config.load_settings()
    squatted = config.runtime_dir()
    squatted.mkdir(mode=0o700)
    os.chown(squatted, NOBODY, NOBODY)
    for start in (
        lambda: InstanceLock(settings.lock_path).acquire(settings.socket_path),
        lambda: bind_unix(settings.socket_path),
    ):
        with pytest.raises(Untrusted) as refused:
            start()
        assert refused.value.message == (
            f"{squatted} is owned by uid {NOBODY}, not you: remove it, or choose "
            "another place with XDG_RUNTIME_DIR or TRAYLLM_SOCKET"
        )
    assert list(squatted.iterdir()) == []
    assert (os.lstat(squatted).st_uid, os.lstat(squatted).st_mode & 0o7777) == (NOBODY, 0o700)


def test_a_symlinked_runtime_dir_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    config.runtime_dir().symlink_to(elsewhere)
    with pytest.raises(Untrusted, match=f"^{config.runtime_dir()} is a symlink: "):
        bind_unix(config.load_settings().socket_path)
    assert list(elsewhere.iterdir()) == []


def test_an_open_runtime_dir_trayllm_did_not_make_is_refused_not_chmodded() -> None:
    existing = config.runtime_dir()
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)  # whatever the umask
    with pytest.raises(Untrusted, match="has mode 0755, not 0700"):
        bind_unix(config.load_settings().socket_path)
    assert existing.stat().st_mode & 0o7777 == 0o755


def test_a_configured_socket_in_an_existing_dir_does_not_chmod_it(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    settings = config.load_settings({"socket": str(shared / "trayllm.sock")})
    with pytest.raises(Untrusted, match=f"^{shared} has mode 1777, not 0700"):
        InstanceLock(settings.lock_path).acquire(settings.socket_path)
    assert shared.stat().st_mode & 0o7777 == 0o1777
    assert list(shared.iterdir()) == []
