"""Read request records back: the whole rotated set oldest first, or the live file as it grows.

Readers of the record file (the shipper, the SLO monitor, ``trayllm slo``) must never fail on what a
crash or a concurrent write leaves behind. A trailing line without its newline is a write in progress
(or a crash mid-write) and a line that is not a JSON object is damage: both are skipped and counted in
``ReadStats``, and reading goes on. A line torn by a crash stays the trailing partial line until the
writer opens the file again and ends it with a newline (``writer._RecordFileHandler``); from then on it
is one corrupt line, and the records after it are whole lines of their own.

Files are identified by (device, inode), not by name, because rotation renames them: ``iter_records``
opens the set newest first and drops a file it already holds under another name, and ``follow`` notices
that the live name now points at a new file, finishes the old one, reads any backups written in between
and carries on with the new one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

_CHUNK = 1 << 16


@dataclass
class ReadStats:
    """What a read saw: documents yielded, and lines skipped."""

    records: int = 0
    corrupt: int = 0  # complete lines that are not a JSON object (damage, or a torn line since closed)
    partial: int = 0  # a last line with no newline (in-progress write, or a crash mid-write)
    files: int = 0  # distinct files opened

    @property
    def skipped(self) -> int:
        return self.corrupt + self.partial


def _parse(line: bytes, stats: ReadStats) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        doc = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        doc = None
    if not isinstance(doc, dict):
        stats.corrupt += 1
        return None
    stats.records += 1
    return doc


def _lines(f: IO[bytes], stats: ReadStats) -> Iterator[dict[str, Any]]:
    """Every complete line of ``f`` from where it stands to its current end; a last partial line is counted."""
    for line in f:
        if not line.endswith(b"\n"):
            stats.partial += 1
            return
        doc = _parse(line, stats)
        if doc is not None:
            yield doc


def backup_path(path: Path, index: int) -> Path:
    """``path.index``: where rotation put the index-th newest backup."""
    return path.with_name(f"{path.name}.{index}")


def _identity(f: IO[bytes]) -> tuple[int, int]:
    st = os.fstat(f.fileno())
    return st.st_dev, st.st_ino


def _open_newest_first(path: Path, *, include_rotated: bool = True,
                       until: tuple[int, int] | None = None) -> list[IO[bytes]]:
    """Open ``path``, then ``path.1``, ``path.2``, … (newest first) up to a missing backup or the file ``until``
    (not included); the caller closes them.

    Holding each file before looking at the next name is what makes this safe against a rotation at the same
    moment: the renamed file shows up again under an older name and is dropped as already held, so no file
    is skipped and none is read twice. A missing ``path`` is passed over (between a rotation's rename and its
    reopen there is none).
    """
    opened: list[IO[bytes]] = []
    seen: set[tuple[int, int]] = set()
    try:
        index = 0
        while True:
            candidate = path if index == 0 else backup_path(path, index)
            try:
                f = open(candidate, "rb")  # noqa: SIM115 (the caller closes it)
            except FileNotFoundError:
                if index > 0:
                    break
                f = None
            if f is not None:
                key = _identity(f)
                if key == until or key in seen:
                    f.close()
                    if key == until:
                        break
                else:
                    seen.add(key)
                    opened.append(f)
            if not include_rotated:
                break
            index += 1
    except BaseException:
        for f in opened:
            f.close()
        raise
    return opened


def iter_records(path: Path, *, include_rotated: bool = True, stats: ReadStats | None = None
                 ) -> Iterator[dict[str, Any]]:
    """Every record in ``path`` (and its backups ``path.N`` … ``path.1`` first, oldest first, when
    ``include_rotated``), skipping a trailing partial line and corrupt lines and counting them in ``stats``.

    The files are all opened before the first is read (``_open_newest_first``), so a rotation during the
    opening neither duplicates nor reorders records. A missing ``path`` yields nothing.
    """
    stats = stats if stats is not None else ReadStats()
    opened = _open_newest_first(Path(path), include_rotated=include_rotated)
    try:
        stats.files += len(opened)
        for f in reversed(opened):
            yield from _lines(f, stats)
    finally:
        for f in opened:
            f.close()


def follow(path: Path, poll_s: float = 0.5, *, from_start: bool = False, stop: threading.Event | None = None,
           stats: ReadStats | None = None) -> Iterator[dict[str, Any]]:
    """Yield records appended to the live file ``path``, forever (or until ``stop`` is set), across rotations.

    Starts at the end of the file (``from_start``: at its beginning). A line is yielded once its newline
    is written. When ``path`` is rotated, the rest of the old file is read, then any backups written
    since (if several rotations happened within one poll), then the new file from its start. A file
    truncated in place is read again from its start. Waits ``poll_s`` between looks when idle.
    """
    stats = stats if stats is not None else ReadStats()
    path = Path(path)

    def wait() -> bool:
        if stop is None:
            time.sleep(poll_s)
            return False
        return stop.wait(poll_s)

    def open_live(at_end: bool) -> IO[bytes] | None:
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed by follow)
        except FileNotFoundError:
            return None
        stats.files += 1
        if at_end:
            f.seek(0, os.SEEK_END)
        return f

    current = open_live(at_end=not from_start)
    buf = b""
    try:
        while stop is None or not stop.is_set():
            if current is None:
                current = open_live(at_end=False)  # it appeared (or came back): all of it is new
                if current is None:
                    if wait():
                        return
                    continue
            chunk = current.read(_CHUNK)
            if chunk:
                buf += chunk
                *complete, buf = buf.split(b"\n")
                for line in complete:
                    doc = _parse(line, stats)
                    if doc is not None:
                        yield doc
                continue
            try:
                live = os.stat(path)
            except FileNotFoundError:
                live = None  # between rotation's rename and its reopen, or deleted: keep the old one
            old = _identity(current)
            if live is not None and (live.st_dev, live.st_ino) != old:
                # rotated: finish the old file (the writer may have added to it after our last read)
                buf += current.read()
                current.close()
                current = None
                *complete, buf = buf.split(b"\n")
                if buf:
                    stats.partial += 1
                    buf = b""
                for line in complete:
                    doc = _parse(line, stats)
                    if doc is not None:
                        yield doc
                # then every file written since, oldest first; the newest is followed from its start
                newer = _open_newest_first(path, until=old)
                stats.files += len(newer)
                try:
                    for backup in reversed(newer[1:]):
                        yield from _lines(backup, stats)
                finally:
                    for backup in newer[1:]:
                        backup.close()
                current = newer[0] if newer else None
                continue
            if live is not None and live.st_size < current.tell():
                current.seek(0)  # truncated in place (not by trayllm): start over
                buf = b""
                continue
            if wait():
                return
    finally:
        if current is not None:
            current.close()
