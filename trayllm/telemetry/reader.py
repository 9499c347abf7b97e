"""Read request records back: the whole rotated set oldest first, or the live file as it grows.

Readers of the record file (the shipper, the SLO monitor, ``trayllm slo``) must never fail on what a
crash or a concurrent write leaves behind. A trailing line without its newline is a write in progress
(or a crash mid-write) and a line that is not a JSON object is damage: both are skipped and counted in
``ReadStats``, and reading goes on. A line torn by a crash stays the trailing partial line until the
writer opens the file again and ends it with a newline (``writer._RecordFileHandler``); from then on it
is one corrupt line, and the records after it are whole lines of their own.

Both readers go through the one follower of rotating files, ``tail.RotatingTail``: files are identified
by (device, inode), not by name, because rotation renames them, so a rotation while reading neither skips
a file nor reads one twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trayllm.telemetry.tail import Cursor, RotatingTail, live_cursor

BATCH = 1024  # lines per read of the tail


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


def _batch(tail: RotatingTail, stats: ReadStats) -> tuple[bool, list[dict[str, Any]]]:
    """One read of ``tail``: whether any line came, and the records among them, counted in ``stats``."""
    files, unfinished = tail.files_opened, tail.unfinished_lines
    lines = tail.read(BATCH)
    stats.files += tail.files_opened - files
    stats.partial += tail.unfinished_lines - unfinished
    return bool(lines), [doc for line in lines if (doc := _parse(line, stats)) is not None]


def iter_records(
    path: Path, *, include_rotated: bool = True, stats: ReadStats | None = None
) -> Iterator[dict[str, Any]]:
    """Every record in ``path`` (and its backups ``path.N`` … ``path.1`` first, oldest first, when
    ``include_rotated``), skipping a trailing partial line and corrupt lines and counting them in ``stats``.

    Reads until it has caught up with the writer. A rotation meanwhile neither duplicates nor reorders
    records: the next file is found by identity. No file yields nothing; a missing ``path`` alone yields the
    backups (none without ``include_rotated``).
    """
    stats = stats if stats is not None else ReadStats()
    path = Path(path)
    start: Cursor | None = None
    if not include_rotated:
        try:
            live = path.stat()
        except FileNotFoundError:
            return
        start = Cursor(live.st_dev, live.st_ino, 0)
    with RotatingTail(path, start) as tail:
        while True:
            got, docs = _batch(tail, stats)
            yield from docs
            if not got:
                break
        if tail.unfinished():
            stats.partial += 1


def follow(
    path: Path,
    poll_s: float = 0.5,
    *,
    from_start: bool = False,
    stop: threading.Event | None = None,
    stats: ReadStats | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield records appended to the live file ``path``, forever (or until ``stop`` is set), across rotations.

    Starts at the end of the file (``from_start``: at its beginning; no file yet: the first to appear, from
    its start). A line is yielded once its newline is written. When ``path`` is rotated, the rest of the old
    file is read, then any backups written since (if several rotations happened within one poll), then the
    new file from its start. A file truncated in place is read again from its start. Waits ``poll_s``
    between looks when idle.
    """
    stats = stats if stats is not None else ReadStats()

    def wait() -> bool:
        if stop is None:
            time.sleep(poll_s)
            return False
        return stop.wait(poll_s)

    with RotatingTail(path, live_cursor(Path(path), at_end=not from_start)) as tail:
        while stop is None or not stop.is_set():
            got, docs = _batch(tail, stats)
            yield from docs
            if not got and wait():
                return
