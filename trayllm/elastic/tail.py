"""Read a rotating record file from a durable position, across rotations, without losing or repeating a line.

A position (``Cursor``) names a file by identity, (device, inode), not by name: rotation renames
``requests.jsonl`` to ``requests.jsonl.1`` and so on, but the inode stays, so a cursor saved before a
rotation still points at the same bytes afterwards. ``RotatingTail`` reads whole lines from the cursor to
the end of that file, then moves to the next newer file in rotation order (``path.N`` … ``path.1``,
``path``). It keeps its file open, so a file renamed (or even deleted by rotation) while being read is
still read to its end.

A line without its newline yet is left for the next read: the writer may still be in the middle of it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from trayllm.telemetry.reader import backup_path

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Cursor:
    """A position in one file: after ``offset`` bytes of the file with identity ``(device, inode)``."""

    device: int
    inode: int
    offset: int

    def to_dict(self) -> dict[str, int]:
        return {"device": self.device, "inode": self.inode, "offset": self.offset}

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> Cursor:
        return cls(int(data["device"]), int(data["inode"]), int(data["offset"]))


@dataclass(frozen=True)
class Line:
    """One complete line and the cursor just after it."""

    raw: bytes  # without the newline
    after: Cursor


def rotation_order(path: Path) -> list[tuple[Path, tuple[int, int]]]:
    """The files of one rotating log, oldest first (``path.N`` … ``path.1``, ``path``), with their identities."""
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    prefix = path.name + "."
    indices = sorted((int(n[len(prefix):]) for n in names if n.startswith(prefix) and n[len(prefix):].isdigit()),
                     reverse=True)
    found: list[tuple[Path, tuple[int, int]]] = []
    for candidate in [backup_path(path, i) for i in indices] + [path]:
        try:
            st = candidate.stat()
        except FileNotFoundError:
            continue
        found.append((candidate, (st.st_dev, st.st_ino)))
    return found


class RotatingTail:
    """Lines of ``path`` and its rotated copies from ``cursor`` on (from the oldest file when None)."""

    def __init__(self, path: Path, cursor: Cursor | None = None) -> None:
        self.path = Path(path)
        self._file: IO[bytes] | None = None
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self.skipped_files = 0  # files rotated away before they were read (their lines are lost)
        if cursor is not None:
            self._identity, self._offset = (cursor.device, cursor.inode), cursor.offset

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def cursor(self) -> Cursor | None:
        """Where reading stands now (after the last line returned)."""
        if self._identity is None:
            return None
        return Cursor(self._identity[0], self._identity[1], self._offset)

    def backlog_bytes(self) -> int:
        """Bytes written but not read yet: the rest of the current file plus every newer file."""
        files = rotation_order(self.path)
        ids = [identity for _, identity in files]
        if self._identity not in ids:
            return sum(p.stat().st_size for p, _ in files if p.exists())
        at = ids.index(self._identity)
        total = 0
        for i, (p, _) in enumerate(files[at:]):
            try:
                size = p.stat().st_size
            except FileNotFoundError:
                continue
            total += max(0, size - self._offset) if i == 0 else size
        return total

    def _open(self) -> bool:
        """Open the file the cursor names (or the oldest file); False when there is nothing to read yet."""
        files = rotation_order(self.path)
        if not files:
            return False
        if self._identity is not None:
            for candidate, identity in files:
                if identity == self._identity:
                    return self._open_file(candidate, identity, self._offset)
            log.warning("the shipping position's file was rotated away before it was shipped; going on with the "
                        "oldest record file left")
            self.skipped_files += 1
        candidate, identity = files[0]
        return self._open_file(candidate, identity, 0)

    def _open_file(self, candidate: Path, identity: tuple[int, int], offset: int) -> bool:
        try:
            f = open(candidate, "rb")  # noqa: SIM115 (kept open across reads, closed by close())
        except FileNotFoundError:
            return False
        st = os.fstat(f.fileno())
        if (st.st_dev, st.st_ino) != identity:  # rotated between the listing and the open: list again
            f.close()
            return False
        f.seek(offset)
        self._file, self._identity, self._offset = f, identity, offset
        return True

    def _newer_file(self) -> tuple[Path, tuple[int, int]] | None:
        """The file written after the current one, if rotation has started one."""
        files = rotation_order(self.path)
        ids = [identity for _, identity in files]
        if self._identity in ids:
            at = ids.index(self._identity)
            return files[at + 1] if at + 1 < len(files) else None
        return files[0] if files else None  # ours was deleted by rotation: the oldest left comes next

    def read(self, max_lines: int) -> list[Line]:
        """Up to ``max_lines`` complete lines (fewer, or none, when the writer has not written more)."""
        out: list[Line] = []
        if self._file is None and not self._open():
            return out
        while len(out) < max_lines:
            out.extend(self._read_current(max_lines - len(out)))
            if len(out) >= max_lines:
                break
            newer = self._newer_file()
            if newer is None:
                break
            out.extend(self._read_current(max_lines - len(out)))  # the writer closed it before rotating
            if len(out) >= max_lines:
                break
            assert self._file is not None
            self._file.close()
            self._file = None
            if not self._open_file(newer[0], newer[1], 0):
                break
        return out

    def _read_current(self, limit: int) -> Iterator[Line]:
        f = self._file
        assert f is not None and self._identity is not None
        lines: list[Line] = []
        while len(lines) < limit:
            raw = f.readline()
            if not raw:
                break
            if not raw.endswith(b"\n"):  # still being written: read it again next time
                f.seek(self._offset)
                break
            self._offset += len(raw)
            stripped = raw.rstrip(b"\r\n")
            if stripped:
                lines.append(Line(stripped, Cursor(self._identity[0], self._identity[1], self._offset)))
        return iter(lines)
