"""Follow a rotating JSON-lines file from a durable position: whole lines, in order, none lost or repeated.

The one follower of the record files: ``trayllm logs`` and the SLO refill (``reader.iter_records``),
``trayllm logs --follow`` (``reader.follow``) and the Elasticsearch shipper, which saves the position.

A position (``Cursor``) names a file by identity, (device, inode), not by name: rotation renames
``requests.jsonl`` to ``requests.jsonl.1`` and so on, but the inode stays, so a cursor saved before a
rotation still points at the same bytes afterwards. ``RotatingTail`` reads whole lines from the cursor to
the end of that file, then moves to the next newer file in rotation order (``path.N`` … ``path.1``,
``path``). It keeps its file open until the next one is open, so a file renamed (or even deleted by
rotation) while being read is still read to its end, and a rotation landing while it reads backups
loses none of them: the next file is always found again by identity.

A line without its newline yet is left for the next read: the writer may still be in the middle of it.
It is given up (and counted) only when a newer file has taken over. A file truncated in place (not by
trayllm: the writer never truncates) is read again from its start.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

Identity = tuple[int, int]  # (st_dev, st_ino)
LOOKS = 5  # how many times to list the set for a file that is not in it, PAUSE_S apart, before it counts as gone
PAUSE_S = 0.001  # a rotation renames the whole set in far less: while it does, a file can hide behind a gap
CHUNK = 1 << 16


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


def backup_path(path: Path, index: int) -> Path:
    """``path.index``: where rotation put the index-th newest backup."""
    return path.with_name(f"{path.name}.{index}")


def rotation_order(path: Path) -> list[tuple[Path, Identity]]:
    """The files of one rotating log, oldest first (``path.N`` … ``path.1``, ``path``), with their identities.

    The backups end at the first missing one: a ``path.4`` beyond a missing ``path.3`` is not part of the set.
    A missing ``path`` is passed over (between a rotation's rename and its reopen there is none). A file seen
    under two names (a rotation renamed it while we looked) is listed once, under the newer name.
    """
    found: list[tuple[Path, Identity]] = []
    seen: set[Identity] = set()
    index = 0
    while True:
        candidate = path if index == 0 else backup_path(path, index)
        try:
            st = candidate.stat()
        except FileNotFoundError:
            if index > 0:
                break
        else:
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                found.append((candidate, (st.st_dev, st.st_ino)))
        index += 1
    found.reverse()
    return found


def live_cursor(path: Path, *, at_end: bool) -> Cursor | None:
    """Where "from now on" starts: the newest file's end (``at_end``) or start; None while there is no file,
    so a tail started from it reads the first file to appear from its start."""
    files = rotation_order(Path(path))
    if not files:
        return None
    newest, (device, inode) = files[-1]
    try:
        size = newest.stat().st_size if at_end else 0
    except FileNotFoundError:  # rotated away since we looked: its identity still finds it
        size = 0
    return Cursor(device, inode, size)


class RotatingTail:
    """Lines of ``path`` and its rotated copies from ``cursor`` on (from the oldest file when None)."""

    def __init__(self, path: Path, cursor: Cursor | None = None) -> None:
        self.path = Path(path)
        self._file: IO[bytes] | None = None
        self._identity: Identity | None = None
        self._offset = 0
        self.files_opened = 0
        self.skipped_files = 0  # files rotated away before they were read (their lines are lost)
        self.unfinished_lines = 0  # last lines left without their newline when a newer file took over
        if cursor is not None:
            self._identity, self._offset = (cursor.device, cursor.inode), cursor.offset

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RotatingTail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def unfinished(self) -> bool:
        """Whether the file being read has bytes after the last whole line (a line still being written)."""
        return self._file is not None and os.fstat(self._file.fileno()).st_size > self._offset

    def read(self, max_lines: int) -> list[bytes]:
        """Up to ``max_lines`` complete lines, without their newlines (fewer, or none, when the writer has not
        written more); blank lines are passed over. ``cursor`` is then just after the last one."""
        out: list[bytes] = []
        if self._file is None and not self._open():
            return out
        misses = 0
        while len(out) < max_lines:
            self._read_current(out, max_lines)
            if len(out) >= max_lines:
                break
            if self._truncated():
                continue
            newer = self._newer_file()
            if newer is None:
                break
            self._read_current(out, max_lines)  # the writer may have added to it before rotating
            if len(out) >= max_lines:
                break
            if not self._move_to(*newer):  # renamed between the look and the open: look again
                misses += 1
                if misses == LOOKS:
                    break
        return out

    # -- files -----------------------------------------------------------------------------------

    def _look(self, *, patient: bool) -> tuple[list[tuple[Path, Identity]], int | None]:
        """The set, and where the cursor's file is in it. ``patient``: a file that is still on disk but not in
        the set is being renamed by a rotation (a gap hides it while the backups shift), so look again."""
        files: list[tuple[Path, Identity]] = []
        for look in range(LOOKS if patient else 1):
            if look:
                time.sleep(PAUSE_S)
            files = rotation_order(self.path)
            ids = [identity for _, identity in files]
            if self._identity in ids:
                return files, ids.index(self._identity)
        return files, None

    def _open(self) -> bool:
        """Open the file the cursor names (or the oldest file); False when there is nothing to read yet."""
        files, at = self._look(patient=self._identity is not None)
        if at is not None:
            candidate, identity = files[at]
            return self._open_file(candidate, identity, self._offset)
        if not files:
            return False
        if self._identity is not None:
            log.warning(
                "%s: the file at the saved position was rotated away before it was read; going on with "
                "the oldest file left",
                self.path,
            )
            self.skipped_files += 1
        candidate, identity = files[0]
        return self._open_file(candidate, identity, 0)

    def _open_file(self, candidate: Path, identity: Identity, offset: int) -> bool:
        try:
            f = open(candidate, "rb")  # noqa: SIM115 (kept open across reads, closed by close())
        except FileNotFoundError:
            return False
        st = os.fstat(f.fileno())
        if (st.st_dev, st.st_ino) != identity:  # rotated between the listing and the open: list again
            f.close()
            return False
        f.seek(offset)
        self.close()
        self._file, self._identity, self._offset = f, identity, offset
        self.files_opened += 1
        return True

    def _move_to(self, candidate: Path, identity: Identity) -> bool:
        """Go on with the next newer file; what is left of the current one is a line that will never end."""
        unfinished = self.unfinished()
        if not self._open_file(candidate, identity, 0):
            return False  # keep the current one: the next read looks again
        if unfinished:
            self.unfinished_lines += 1
        return True

    def _truncated(self) -> bool:
        """A file cut shorter than the position was truncated in place: read it again from its start."""
        assert self._file is not None
        if os.fstat(self._file.fileno()).st_size >= self._offset:
            return False
        self._file.seek(0)
        self._offset = 0
        return True

    def _newer_file(self) -> tuple[Path, Identity] | None:
        """The file written after the current one, if rotation has started one."""
        assert self._file is not None
        files, at = self._look(patient=os.fstat(self._file.fileno()).st_nlink > 0)
        if at is not None:
            return files[at + 1] if at + 1 < len(files) else None
        return files[0] if files else None  # deleted by rotation (or moved away): the oldest left comes next

    def _read_current(self, out: list[bytes], limit: int) -> None:
        """Whole lines from the position on, up to ``limit`` in ``out``; the file is left at the position, so
        a line still being written (no newline yet) is read again next time."""
        f = self._file
        assert f is not None
        buf = b""
        while len(out) < limit and (chunk := f.read(CHUNK)):
            buf += chunk
            start = 0
            while len(out) < limit and (end := buf.find(b"\n", start)) >= 0:
                self._offset += end + 1 - start
                stripped = buf[start:end].rstrip(b"\r")
                start = end + 1
                if stripped:
                    out.append(stripped)
            buf = buf[start:]
        f.seek(self._offset)
