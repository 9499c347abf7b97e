"""Append request records to a rotated JSON-lines file without ever making a request wait for the disk.

``RecordWriter.write(doc)`` serialises the document on the caller's thread (python-json-logger's
``JsonFormatter``, which costs microseconds and snapshots the document) and hands the line to a
``QueueHandler``; a ``QueueListener`` thread does the disk I/O through a size-rotating file handler.
A slow or stalled disk therefore delays the file, never the request. The queue is unbounded on
purpose: the file is the source of truth, and dropping a record is worse than holding a few KB.

Each line goes out as ONE ``write(2)`` on an ``O_APPEND`` descriptor, so a reader sees whole lines or a
trailing partial one, never two records interleaved. The file is created 0600 (records name users and may
hold prompts) in a directory created 0700.

A crash (or a full disk) in the middle of a line leaves a torn line with no newline; the next record
appended to it would be glued onto it and be lost with it. So whenever the handler opens the file (at
start, after a rotation) and before the next line after a failed write, it ends a torn last line with a
newline: the fragment becomes one invalid line that readers skip and count, and every record after it
starts on its own line. Nothing is moved or rewritten (the file stays append-only). Another process
appending to the same file cannot be split by this: every line is one ``O_APPEND`` write, so the newline
lands between whole lines, and at worst adds a blank line, which readers pass over.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import threading
from collections.abc import Mapping
from functools import partial
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
from pathlib import Path
from typing import Any, BinaryIO, cast

from pythonjsonlogger.json import JsonFormatter

log = logging.getLogger(__name__)

LOGGER_NAME = "trayllm.records"
FILE_MODE = 0o600
DIR_MODE = 0o700


def _make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parents 0700 (``mkdir(parents=True)`` would make parents 0755).
    Directories that already exist are left as they are: they are not ours."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE, exist_ok=True)


class _DocumentFormatter(JsonFormatter):
    """Exactly the document, nothing added: no message, asctime, level or timestamp of the logging record."""

    def __init__(self) -> None:
        # fmt=[] (no required fields) so python-json-logger adds nothing of its own; every LogRecord
        # attribute is reserved so none leaks in as an "extra"; NaN/Infinity are refused, not written
        # as invalid JSON; UTF-8 stays UTF-8.
        reserved = [*vars(logging.makeLogRecord({})), "message", "asctime"]
        super().__init__(
            fmt=[],
            timestamp=False,
            reserved_attrs=reserved,
            json_serializer=partial(json.dumps, allow_nan=False),
            json_ensure_ascii=False,
        )


class _StrictQueueHandler(QueueHandler):
    """A QueueHandler that lets a document it cannot serialise raise into ``write()`` instead of printing
    a traceback to stderr and dropping the record."""

    def emit(self, record: logging.LogRecord) -> None:
        self.enqueue(self.prepare(record))


class _RecordFileHandler(RotatingFileHandler):
    """RotatingFileHandler that opens 0600 with O_APPEND, writes each line with one unbuffered write, and
    starts every line on a line of its own even after a torn one."""

    _line_may_be_torn = False  # the file may end in a partial line: look before writing the next one

    def _open(self) -> Any:  # the stream type of the base class
        path = Path(self.baseFilename)
        _make_private_dirs(path.parent)
        # read as well as append: the last byte tells whether the file ends in a torn line
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)  # a file left by someone else's umask: tighten it, it is ours
        stream = open(fd, "ab", buffering=0)  # noqa: SIM115 (closed by the handler)
        self._line_may_be_torn = True
        # now, not at the next record, so readers waiting on the fragment go on; a disk refusing even one
        # byte leaves the flag set, and the next emit tries again before its line
        with contextlib.suppress(OSError):
            self._end_torn_line(stream)
        return stream

    def _end_torn_line(self, stream: Any) -> None:
        """Append a newline if the file ends in a partial line (left by a crash or a failed write)."""
        fd = stream.fileno()
        size = os.fstat(fd).st_size
        if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
            stream.write(b"\n")
            log.warning(
                "the record file ended in a torn line (a crash or a failed write in the middle of a "
                "record); it is closed so the next record starts on its own line, and readers skip it",
                extra={"path": self.baseFilename},
            )
        self._line_may_be_torn = False

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 (logging's name)
        if self.maxBytes <= 0:
            return False
        if self.stream is None:
            self.stream = self._open()
        size = self.stream.seek(0, os.SEEK_END)
        # an empty file is never rotated, even for a line longer than maxBytes (no empty backups)
        return size > 0 and size + len(self.format(record).encode()) + 1 > self.maxBytes

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.shouldRollover(record):
                self.doRollover()
            if self.stream is None:
                self.stream = self._open()
            if self._line_may_be_torn:
                self._end_torn_line(self.stream)
            data = memoryview((self.format(record) + "\n").encode("utf-8"))
            self._line_may_be_torn = True  # until the whole line is out: a failed write may leave part of it
            stream = cast(BinaryIO, self.stream)  # opened in binary by _open, whatever the base class declares
            while data:  # a regular file takes it in one write; loop only for the pathological short write
                data = data[stream.write(data) :]
            self._line_may_be_torn = False
        except Exception:
            self.handleError(record)


class RecordWriter:
    """Writes request-record documents as JSON lines to ``path``, rotating at ``max_bytes`` into ``backups``
    files (``path.1`` newest … ``path.N`` oldest). ``write()`` never blocks on disk; ``close()`` flushes."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0 (0: never rotate)")
        if backups < 1 and max_bytes > 0:
            raise ValueError("backups must be >= 1 when rotating: the record file is never truncated in place")
        self.path = Path(path)
        self._file_handler = _RecordFileHandler(self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._file_handler.setFormatter(logging.Formatter("%(message)s"))
        self._queue: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        queue_handler = _StrictQueueHandler(self._queue)
        queue_handler.setFormatter(_DocumentFormatter())
        # Not registered with logging.getLogger: nobody's dictConfig(disable_existing_loggers=True),
        # logging.disable() or root handlers can silence or duplicate the records.
        self._logger = logging.Logger(LOGGER_NAME, logging.INFO)
        self._logger.propagate = False
        self._logger.addHandler(queue_handler)
        self._listener = QueueListener(self._queue, self._file_handler)
        self._listener.start()
        self._closed = False
        self._lock = threading.Lock()
        atexit.register(self.close)  # an interpreter exit without close() still writes what was queued

    def write(self, doc: Mapping[str, Any]) -> None:
        """Queue one document to be written as one line. Returns at once.

        Raises ValueError for a document JSON cannot hold (NaN, Infinity), RuntimeError after ``close()``.
        """
        record = self._logger.makeRecord(LOGGER_NAME, logging.INFO, __file__, 0, dict(doc), (), None)
        with self._lock:  # so that no line can slip in behind close()'s sentinel and be lost
            if self._closed:
                raise RuntimeError("the record writer is closed")
            self._logger.handle(record)

    def close(self) -> None:
        """Write everything queued, then close the file. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            atexit.unregister(self.close)
            self._listener.stop()  # enqueues a sentinel and joins: everything before it is on disk
            self._file_handler.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
