"""What one ``trayllm desktop install`` changed on disk, so that a failure part-way can put it all back.

Install is all or nothing: a launcher entry without its icon, or units beside an autostart entry that does not
agree with them, is worse than no install, and whoever fixes the cause and installs again should start from
where they were. Each write remembers what its path held before (nothing, or the older file's bytes) and which
directories it had to create; ``undo`` removes the new files, puts the older bytes back, and removes those
directories where they are empty. Files the run did not change are never touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from trayllm.desktop.writing import remove_file, write_atomic
from trayllm.errors import TrayllmError


class Changes:
    """The files and directories one run wrote, in order."""

    def __init__(self) -> None:
        self._files: list[tuple[Path, bytes | None]] = []  # (path, what it held before; None: nothing)
        self._dirs: list[Path] = []  # created by this run, outermost first

    def __bool__(self) -> bool:
        return bool(self._files or self._dirs)

    def write(self, path: Path, content: bytes) -> bool:
        """``write_atomic``, remembered; True when the file was written (False: it held ``content`` already)."""
        try:
            previous = path.read_bytes() if path.is_file() else None
        except OSError as exc:
            raise TrayllmError(f"cannot read {path} ({exc.strerror or exc}); fix that and install again") from None
        missing_dirs = [parent for parent in reversed(path.parents) if not parent.exists()]
        try:
            written = write_atomic(path, content)
        finally:  # a write that failed may still have created the directories
            self._dirs.extend(parent for parent in missing_dirs if parent.is_dir())
        if written:
            self._files.append((path, previous))
        return written

    def undo(self, say: Callable[[str], None]) -> list[str]:
        """Take every change back, newest first, saying what it does; what could not be undone, one line each."""
        problems = []
        for path, previous in reversed(self._files):
            try:
                if previous is None:
                    remove_file(path)
                    say(f"removed {path}")
                else:
                    write_atomic(path, previous)
                    say(f"restored {path}")
            except TrayllmError as exc:
                problems.append(exc.message)
        self._files.clear()
        for directory in reversed(self._dirs):
            with contextlib.suppress(OSError):  # not empty: something else has put a file there since
                directory.rmdir()
        self._dirs.clear()
        return problems
