"""Writing and removing the installed files: atomic, idempotent, and every failure one TrayllmError line."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from trayllm.errors import TrayllmError


def write_atomic(path: Path, content: bytes) -> bool:
    """Put ``content`` at ``path`` (mode 0644) unless it holds that already; True when the file was written.

    The bytes go to a temporary file beside ``path`` that is then renamed over it, so a session manager or
    systemd reading the file at that moment sees the old file or the new one, never half of one.
    """
    if path.is_dir():
        raise TrayllmError(f"{path} is a directory, where trayllm's file belongs; move it away and install again")
    try:
        if path.is_file() and path.read_bytes() == content:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        raise TrayllmError(f"cannot write {path} ({exc.strerror or exc}); fix that and install again") from None
    return True


def remove_file(path: Path) -> bool:
    """Remove the file at ``path``; True when there was one. A directory there is not ours: it is an error."""
    if path.is_dir() and not path.is_symlink():
        raise TrayllmError(f"{path} is a directory, not trayllm's file; remove it yourself if it is not needed")
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise TrayllmError(f"cannot remove {path} ({exc.strerror or exc}); fix that and uninstall again") from None
    return True
