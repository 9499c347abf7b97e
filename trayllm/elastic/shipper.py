"""Ship the record files to Elasticsearch without losing or duplicating a record, whatever happens on the way.

For each stream (``requests.jsonl``, ``alerts.jsonl``) the shipper reads a batch of lines from its
durable position (``telemetry.tail.RotatingTail``), sends them as ``_bulk`` requests of ``create`` actions with
``_id = event.id`` into the record's own data stream, and advances the position only after every line of
the batch is settled. A batch is ``ship_batch`` lines at most, and each request body ``es_bulk_max_bytes`` at
most (Elasticsearch refuses a body over its ``http.max_content_length``): a long batch goes as several requests.

- ``201`` created, or ``409`` (already there: a resend after a connection dropped mid-bulk, a restart)
  → delivered;
- ``429`` or any 5xx for an item, a whole-request 429/5xx, a timeout or a lost connection → the unsettled
  lines are sent again after an exponential backoff (0.5 s doubling to 30 s, with jitter), for as long as
  it takes;
- any other 4xx for an item (Elasticsearch will never take that document) → the line goes to the
  dead-letter file with the reason, and counts as settled, so one bad record never blocks the rest. A line
  that is not JSON or has no ``event.id`` goes there too, without being sent. A line torn by a crash is
  such a line once the writer has ended it (``telemetry.writer``): it is kept there and counted as
  ``unreadable``, and the records around it ship.
- a record whose bulk lines alone are over ``es_bulk_max_bytes`` (a huge opted-in prompt) → the dead-letter
  file, without being sent: shipping it alone would make a body over the bound the user set, and the
  cluster's limit is not known from here. The message says to raise the setting to ship records that big.
- a whole-request ``413`` (the body is over the cluster's ``http.max_content_length``, set below
  ``es_bulk_max_bytes``) → the lines are sent again in halves, down to one record, which then goes to the
  dead-letter file. Neither case stalls the queue.

The position is saved (``checkpoint.json``, written to a temporary file and renamed) after each settled
batch. A crash between Elasticsearch storing a batch and the save only makes the next run send it again,
which ``create`` + ``_id`` turns into 409s. Only one shipper may run per state directory (a lock file), so
the daemon's shipping thread and ``trayllm ship`` never race over the position. Serving never waits on any
of this: the shipper only reads files the daemon has already written.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trayllm.config import Settings
from trayllm.errors import ElasticError
from trayllm.telemetry.tail import Cursor, RotatingTail

log = logging.getLogger(__name__)
# the client logs every failed attempt at WARNING; the shipper already says what happened, once per backoff
logging.getLogger("elastic_transport.node_pool").setLevel(logging.ERROR)

CHECKPOINT = "checkpoint.json"
LOCK = "shipper.lock"
DEAD_LETTER = "dead-letter.jsonl"
RETRYABLE_ITEM = frozenset({429, 500, 502, 503, 504})


@dataclass
class ShipperStats:
    """What ``trayllm status`` and ``trayllm ship`` show about shipping."""

    state: str = "starting"  # shipping | idle | backing off | stopped
    delivered: int = 0  # 201 created
    duplicates: int = 0  # 409: it was already there
    dead_lettered: int = 0
    unreadable: int = 0  # of those dead-lettered: lines that are not a JSON object (torn by a crash, or damaged)
    retries: int = 0  # bulk requests sent again
    backlog_bytes: int = 0
    last_error: str | None = None
    last_delivery: float | None = None  # Unix seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Pending:
    line: bytes  # without its newline
    doc: dict[str, Any] | None
    index: str | None = None
    doc_id: str | None = None
    problem: str | None = None  # why it cannot be sent at all

    @property
    def bulk(self) -> bytes:
        """The record's two lines in a ``_bulk`` body: its ``create`` action and the record, each ended."""
        action = {"create": {"_index": self.index, "_id": self.doc_id}}
        return json.dumps(action, separators=(",", ":")).encode() + b"\n" + self.line + b"\n"


class _BodyTooLarge(Exception):
    """Elasticsearch refused a whole bulk body as over its ``http.max_content_length`` (413); never escapes."""


@dataclass
class _Stream:
    name: str
    path: Path
    tail: RotatingTail = field(init=False)

    def open(self, cursor: Cursor | None) -> None:
        self.tail = RotatingTail(self.path, cursor)


class ShipperLock:
    """One shipper per state directory."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ElasticError(
                f"another shipper (pid {holder}) is already shipping these records; the daemon "
                "ships by itself when es_url is set"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _index_of(doc: dict[str, Any]) -> str | None:
    ds = doc.get("data_stream")
    if not isinstance(ds, dict) or not all(isinstance(ds.get(k), str) for k in ("type", "dataset", "namespace")):
        return None
    return f"{ds['type']}-{ds['dataset']}-{ds['namespace']}"


def _prepare(line: bytes) -> _Pending:
    try:
        doc = json.loads(line)
    except ValueError:
        return _Pending(line, None, problem="not valid JSON")
    if not isinstance(doc, dict):
        return _Pending(line, None, problem="not a JSON object")
    event = doc.get("event")
    doc_id = event.get("id") if isinstance(event, dict) else None
    index = _index_of(doc)
    if not isinstance(doc_id, str) or not doc_id:
        return _Pending(line, doc, problem="no event.id")
    if index is None:
        return _Pending(line, doc, problem="no data_stream.type/dataset/namespace")
    return _Pending(line, doc, index, doc_id)


class Shipper:
    """Ships ``settings.records_path`` and ``settings.alerts_path`` with one Elasticsearch client."""

    def __init__(
        self,
        settings: Settings,
        es: Any,
        *,
        batch: int | None = None,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] | None = None,
        busy: Callable[[], bool] | None = None,
        max_defer_s: float = 10.0,
    ) -> None:
        """``busy`` (the daemon's serving state) defers each batch while it says True, but never for longer
        than ``max_defer_s``: serving goes first, and a daemon that is never idle still ships, slowly."""
        self.settings = settings
        self.busy = busy
        self.max_defer_s = max_defer_s
        self.es = es
        self.batch = batch or settings.ship_batch
        self.max_bytes = settings.es_bulk_max_bytes
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.directory = settings.shipping_path
        self.stats = ShipperStats()
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._lock = ShipperLock(self.directory)
        self._streams = [_Stream("requests", settings.records_path), _Stream("alerts", settings.alerts_path)]

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> None:
        """Take the lock and read the saved positions. Raises ElasticError when another shipper runs."""
        self._lock.acquire()
        saved = self._load_checkpoint()
        for stream in self._streams:
            stream.open(Cursor.from_dict(saved[stream.name]) if stream.name in saved else None)

    def close(self) -> None:
        for stream in self._streams:
            if hasattr(stream, "tail"):
                stream.tail.close()
        self._lock.release()
        self.stats.state = "stopped"

    def stop(self) -> None:
        """Ask a running ``run`` to return (from another thread)."""
        self._stop.set()

    def run(self, *, once: bool = False, poll_s: float = 0.5) -> ShipperStats:
        """Ship until stopped; with ``once``, until every file is read to its end."""
        deferred_since: float | None = None
        while not self._stop.is_set():
            if self.busy is not None and self.busy():
                deferred_since = deferred_since or time.monotonic()
                if time.monotonic() - deferred_since < self.max_defer_s:
                    self.stats.state = "deferred while serving"
                    self._stop.wait(0.05)
                    continue
            deferred_since = None
            moved = sum(self._ship_stream(stream) for stream in self._streams)
            self.stats.backlog_bytes = self.backlog_bytes()
            if moved == 0:
                self.stats.state = "idle"
                if once:
                    break
                self._stop.wait(poll_s)
        return self.stats

    def backlog_bytes(self) -> int:
        return sum(s.tail.backlog_bytes() for s in self._streams if hasattr(s, "tail"))

    # -- one batch -------------------------------------------------------------------------------

    def _ship_stream(self, stream: _Stream) -> int:
        """Ship one batch of ``stream``; how many lines were settled (0: nothing new)."""
        lines = stream.tail.read(self.batch)
        if not lines:
            return 0
        self.stats.state = "shipping"
        pending = [_prepare(line) for line in lines]
        for item in pending:
            if item.problem is not None:
                if item.doc is None:
                    self.stats.unreadable += 1
                self._dead_letter(item, None, item.problem)
        for body in self._bodies([p for p in pending if p.problem is None]):
            if not self._deliver(body):
                return 0  # the position is not saved: these lines go again next time
        self.stats.state = "shipping"
        self._save_checkpoint()
        return len(lines)

    def _bodies(self, items: list[_Pending]) -> list[list[_Pending]]:
        """``items`` grouped into bulk bodies of at most ``es_bulk_max_bytes``, in order; a record over that on
        its own goes to the dead-letter file instead."""
        groups: list[list[_Pending]] = []
        size = 0
        for item in items:
            lines = len(item.bulk)
            if lines > self.max_bytes:
                self._dead_letter(
                    item,
                    None,
                    f"the record is {lines} bytes in a bulk request, over es_bulk_max_bytes ({self.max_bytes}); "
                    "raise es_bulk_max_bytes (below the cluster's http.max_content_length) to ship records this big",
                )
                continue
            if not groups or size + lines > self.max_bytes:
                groups.append([])
                size = 0
            groups[-1].append(item)
            size += lines
        return groups

    def _deliver(self, items: list[_Pending]) -> bool:
        """Send ``items`` until every one is settled, backing off while Elasticsearch cannot take them; False when
        asked to stop first. A body refused as too large (413) goes again in halves; one record alone refused
        so goes to the dead-letter file."""
        unsettled = items
        backoff = self.initial_backoff
        while unsettled:
            if self._stop.is_set():
                return False
            try:
                unsettled = self._send(unsettled)
                if not unsettled:
                    break
                reason = "Elasticsearch asked to slow down or failed some documents (429/5xx)"
            except _BodyTooLarge as exc:
                if len(unsettled) == 1:
                    self._dead_letter(unsettled[0], 413, f"{exc}; even alone, this record is too large for it")
                    return True
                self.stats.last_error = f"{exc}; sending it in halves (lower es_bulk_max_bytes below that limit)"
                log.warning("%s", self.stats.last_error)
                half = len(unsettled) // 2
                return self._deliver(unsettled[:half]) and self._deliver(unsettled[half:])
            except ElasticError as exc:
                reason = exc.message
            self.stats.retries += 1
            self.stats.state, self.stats.last_error = "backing off", reason
            self.stats.backlog_bytes = self.backlog_bytes()
            log.warning("shipping paused: %s; retrying in %.1f s", reason, backoff)
            self._sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(self.max_backoff, backoff * 2)
        return True

    def _send(self, items: list[_Pending]) -> list[_Pending]:
        """One bulk request; the items to send again (429/5xx)."""
        from elasticsearch import ApiError, ConnectionError, ConnectionTimeout, TransportError

        body = b"".join(item.bulk for item in items)
        try:
            response = self.es.bulk(operations=body)
        except (ConnectionError, ConnectionTimeout) as exc:
            raise ElasticError(f"lost Elasticsearch ({type(exc).__name__}: {exc.message})") from None
        except ApiError as exc:
            if exc.meta.status == 413:
                raise _BodyTooLarge(
                    f"Elasticsearch refused a bulk request of {len(body)} bytes as too large "
                    "(413: over its http.max_content_length)"
                ) from None
            if exc.meta.status == 429 or exc.meta.status >= 500:
                raise ElasticError(f"Elasticsearch answered {exc.meta.status} to the whole bulk request") from None
            raise ElasticError(
                f"Elasticsearch refused the bulk request ({exc.meta.status}: {exc.message}); "
                "check the credentials and privileges (docs/ELASTIC.md)"
            ) from None
        except TransportError as exc:
            raise ElasticError(f"Elasticsearch transport error: {exc.message}") from None
        results = response.get("items", [])
        if len(results) != len(items):
            raise ElasticError(f"Elasticsearch answered {len(results)} items for {len(items)} documents")
        again: list[_Pending] = []
        for item, result in zip(items, results, strict=True):
            outcome = next(iter(result.values()))
            status = int(outcome.get("status", 0))
            if status == 201:
                self.stats.delivered += 1
            elif status == 409:
                self.stats.duplicates += 1
            elif status in RETRYABLE_ITEM:
                again.append(item)
            else:
                error = outcome.get("error", {})
                reason = error.get("reason") if isinstance(error, dict) else str(error)
                self._dead_letter(
                    item, status, f"{error.get('type', 'error') if isinstance(error, dict) else ''}: {reason}"
                )
        if len(again) < len(items):
            self.stats.last_delivery = time.time()
        return again

    # -- files -----------------------------------------------------------------------------------

    def _dead_letter(self, item: _Pending, status: int | None, reason: str) -> None:
        """Keep a document Elasticsearch will never take, with why, and go on."""
        self.stats.dead_lettered += 1
        entry = {
            "at": time.time(),
            "status": status,
            "reason": reason,
            "index": item.index,
            "id": item.doc_id,
            "record": item.doc if item.doc is not None else item.line.decode("utf-8", "replace"),
        }
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / DEAD_LETTER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(entry) + "\n").encode())
        finally:
            os.close(fd)
        log.error("a record was refused for good and kept in %s: %s", DEAD_LETTER, reason)

    def _load_checkpoint(self) -> dict[str, dict[str, int]]:
        path = self.directory / CHECKPOINT
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError:
            log.error("%s is damaged; shipping from the oldest records (Elasticsearch drops the repeats)", path)
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)}

    def _save_checkpoint(self) -> None:
        data = {s.name: cursor.to_dict() for s in self._streams if (cursor := s.tail.cursor) is not None}
        path = self.directory / CHECKPOINT
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(data).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
