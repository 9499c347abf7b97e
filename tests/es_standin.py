"""A wire-level Elasticsearch stand-in: real HTTP on loopback, the parts of the API trayllm uses, and faults.

It answers like Elasticsearch 8/9 where trayllm can tell the difference: the ``X-Elastic-Product`` header
the client checks, the ``compatible-with`` media types (a server of major N takes N and N-1, refuses the
rest with ``media_type_header_exception``), ``_bulk`` item semantics (``create`` into a data stream: 201,
409 ``version_conflict_engine_exception`` for an id already there, 400 ``mapper_parsing_exception`` for a
value the template's mapping cannot take or a missing ``@timestamp``, 400 for ``index`` ops on a data
stream), index templates and lifecycle policies, and ``_search`` with the aggregations trayllm sends.

It keeps the limits a real cluster keeps, so code that passes here does not fail on one: ``max_result_window``
(``index.max_result_window``, 10,000 by default: a deeper ``from + size`` gets the cluster's 400, see
``es_search``) and ``max_content_length`` (``http.max_content_length``, 100mb by default: a larger request body
gets a bodiless 413 and the connection is closed, as Netty's aggregator does). ``max_bulk_body`` is the largest
``_bulk`` body it received, refused or not.

Faults, scriptable from the test: ``down()`` / ``up()`` (the port refuses connections), ``slow(s)``,
``reject_bulks(n, status)`` (whole-request 429 or 5xx), ``reject_items(n)`` (the next n items get 429),
``drop_after_store(n)`` (the next n bulks are stored, then the connection is closed without an answer,
the case where the client cannot know what happened).

``indexed`` counts how many times each ``(index, id)`` was *created*: a correct shipper leaves every count
at 1.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from es_search import MAX_RESULT_WINDOW, SearchError, search

_COMPAT = re.compile(r"compatible-with=(\d+)")
MAX_CONTENT_LENGTH = 100 * 1024 * 1024  # http.max_content_length's default, 100mb


class _Server(ThreadingHTTPServer):
    """Tracks its open connections, so going down can cut the keep-alive ones too (as a dead node would)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.connections: set[socket.socket] = set()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)

    def cut(self) -> None:
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class ElasticStandIn:
    def __init__(
        self,
        version: str = "8.19.3",
        *,
        api_key: str | None = None,
        port: int = 0,
        max_result_window: int = MAX_RESULT_WINDOW,
        max_content_length: int = MAX_CONTENT_LENGTH,
    ) -> None:
        self.version = version
        self.api_key = api_key
        self.max_result_window = max_result_window
        self.max_content_length = max_content_length
        self.max_bulk_body = 0  # bytes, the largest _bulk body received
        self.templates: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.docs: dict[str, dict[str, dict[str, Any]]] = {}  # index -> id -> source
        self.indexed: Counter[tuple[str, str]] = Counter()
        self.bulk_requests = 0
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        self._lock = threading.Lock()
        self._delay = 0.0
        self._reject_bulks: list[int] = []
        self._reject_items = 0
        self._drops = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = port
        self.up()

    # -- lifecycle and faults ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        standin = self

        class Handler(_Handler):
            owner = standin

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.cut()
            self._server = None

    def close(self) -> None:
        self.down()

    def slow(self, seconds: float) -> None:
        self._delay = seconds

    def reject_bulks(self, count: int, status: int = 429) -> None:
        with self._lock:
            self._reject_bulks.extend([status] * count)

    def reject_items(self, count: int) -> None:
        with self._lock:
            self._reject_items += count

    def drop_after_store(self, count: int = 1) -> None:
        with self._lock:
            self._drops += count

    # -- what it holds ---------------------------------------------------------------------------

    def ids(self, index: str) -> set[str]:
        return set(self.docs.get(index, {}))

    def sources(self, index: str) -> Iterator[dict[str, Any]]:
        return iter(list(self.docs.get(index, {}).values()))

    def template_for(self, index: str) -> dict[str, Any] | None:
        """The highest-priority template whose pattern matches ``index``."""
        best = None
        for body in self.templates.values():
            for pattern in body.get("index_patterns", []):
                matches = re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), index)
                if matches and (best is None or body.get("priority", 0) > best.get("priority", 0)):
                    best = body
        return best


class _Handler(BaseHTTPRequestHandler):
    owner: ElasticStandIn
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: without this, each answer waits ~40 ms

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    # -- plumbing ----------------------------------------------------------------------------------

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Type", "application/vnd.elasticsearch+json;compatible-with=8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, kind: str, reason: str) -> None:
        self._send(
            status,
            {
                "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
                "status": status,
            },
        )

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _too_large(self) -> None:
        """Elasticsearch's answer to a body over ``http.max_content_length``: 413 with no body, then it hangs up."""
        self.send_response(413)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _handle(self) -> None:
        owner = self.owner
        body = self._body()
        owner.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        if "_bulk" in self.path.split("?")[0].split("/"):
            with owner._lock:
                owner.max_bulk_body = max(owner.max_bulk_body, len(body))
        if len(body) > owner.max_content_length:
            return self._too_large()
        if owner._delay:
            time.sleep(owner._delay)
        for header in ("accept", "content-type"):
            match = _COMPAT.search(self.headers.get(header, ""))
            major = int(owner.version.split(".")[0])
            if match and int(match.group(1)) not in (major, major - 1):
                return self._error(
                    400,
                    "media_type_header_exception",
                    f"Invalid media-type value on headers [{header}]: Accept version must be "
                    f"either version {major} or {major - 1}, but found {match.group(1)}",
                )
        if owner.api_key is not None and self.headers.get("Authorization") != f"ApiKey {owner.api_key}":
            return self._error(401, "security_exception", "unable to authenticate with provided credentials")
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        route = (self.command, parts[0] if parts else "")
        if route == ("GET", "") or (self.command == "HEAD" and not parts):
            return self._send(
                200,
                {
                    "name": "standin",
                    "cluster_name": "trayllm-test",
                    "version": {"number": owner.version, "build_flavor": "default"},
                    "tagline": "You Know, for Search",
                },
            )
        if parts[:1] == ["_bulk"] or parts[1:2] == ["_bulk"]:
            return self._bulk(body, parts[0] if parts[1:2] == ["_bulk"] else None)
        if parts[:2] == ["_ilm", "policy"] and len(parts) == 3:
            return self._named(owner.policies, parts[2], body, wrap="policy")
        if parts[:1] == ["_index_template"] and len(parts) == 2:
            return self._named(owner.templates, parts[1], body, wrap="index_template")
        if len(parts) == 2 and parts[1] == "_search" and self.command in ("GET", "POST"):
            try:
                return self._send(200, search(owner, parts[0], json.loads(body or b"{}"), query))
            except SearchError as exc:
                return self._send(400, {**exc.body(), "status": 400})
        return self._error(404, "resource_not_found_exception", f"no handler for {self.command} {url.path}")

    def _named(self, store: dict[str, Any], name: str, body: bytes, wrap: str) -> None:
        if self.command == "PUT":
            store[name] = json.loads(body)[wrap] if wrap == "policy" else json.loads(body)
            return self._send(200, {"acknowledged": True})
        if name not in store:
            return self._error(404, "resource_not_found_exception", f"{wrap} [{name}] not found")
        if wrap == "policy":
            return self._send(200, {name: {"policy": store[name]}})
        return self._send(200, {"index_templates": [{"name": name, "index_template": store[name]}]})

    # -- _bulk -----------------------------------------------------------------------------------

    def _bulk(self, body: bytes, default_index: str | None) -> None:
        owner = self.owner
        with owner._lock:
            owner.bulk_requests += 1
            if owner._reject_bulks:
                status = owner._reject_bulks.pop(0)
                kind = "es_rejected_execution_exception" if status == 429 else "internal_server_error"
                return self._error(status, kind, "rejected by the stand-in")
            drop = owner._drops > 0
            owner._drops -= drop
        lines = [line for line in body.split(b"\n") if line.strip()]
        items = []
        for action_line, source_line in zip(lines[::2], lines[1::2], strict=True):
            ((op, meta),) = json.loads(action_line).items()
            index = meta.get("_index", default_index)
            items.append({op: self._bulk_item(op, index, meta.get("_id"), json.loads(source_line))})
        if drop:  # stored, but the client never hears back
            self.close_connection = True
            self.connection.close()
            return None
        errors = any(next(iter(i.values()))["status"] >= 300 for i in items)
        return self._send(200, {"took": 1, "errors": errors, "items": items})

    def _bulk_item(self, op: str, index: str, doc_id: str | None, source: dict[str, Any]) -> dict[str, Any]:
        owner = self.owner

        def failed(status: int, kind: str, reason: str) -> dict[str, Any]:
            return {"_index": index, "_id": doc_id, "status": status, "error": {"type": kind, "reason": reason}}

        with owner._lock:
            if owner._reject_items > 0:
                owner._reject_items -= 1
                return failed(429, "es_rejected_execution_exception", "rejected execution (queue capacity)")
        template = owner.template_for(index)
        if template is not None and "data_stream" in template:
            if op != "create":
                return failed(
                    400,
                    "illegal_argument_exception",
                    f"only write ops with an op_type of create are allowed in data streams, got [{op}]",
                )
            if "@timestamp" not in source:
                return failed(400, "illegal_argument_exception", "data stream timestamp field [@timestamp] is missing")
            problem = _mapping_problem(template["template"]["mappings"]["properties"], source, doc_id)
            if problem:
                return {"_index": index, "_id": doc_id, "status": 400, "error": problem}
        with owner._lock:
            docs = owner.docs.setdefault(index, {})
            if doc_id is not None and doc_id in docs:
                return failed(
                    409,
                    "version_conflict_engine_exception",
                    f"[{doc_id}]: version conflict, document already exists (current version [1])",
                )
            doc_id = doc_id or f"auto-{len(docs)}"
            docs[doc_id] = source
            owner.indexed[(index, doc_id)] += 1
        return {"_index": index, "_id": doc_id, "_version": 1, "result": "created", "status": 201}

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802
        self._handle()

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle()


def _mapping_problem(
    properties: dict[str, Any], source: dict[str, Any], doc_id: str | None, prefix: str = ""
) -> dict[str, Any] | None:
    """The bulk item ``error`` Elasticsearch's mapping gives ``source`` (only the types trayllm maps), or None.
    Elasticsearch 8.8 renamed ``mapper_parsing_exception`` (the 7.x name) to ``document_parsing_exception``."""
    for key, value in source.items():
        path = f"{prefix}{key}"
        spec = properties.get(key)
        if spec is None:
            continue  # dynamic: true
        if "properties" in spec:
            if not isinstance(value, dict):
                reason = (
                    f"object mapping for [{path}] tried to parse field [{key}] as object, but found a concrete value"
                )
                return {"type": "document_parsing_exception", "reason": reason}
            problem = _mapping_problem(spec["properties"], value, doc_id, f"{path}.")
            if problem:
                return problem
            continue
        kind = spec.get("type")
        for v in value if isinstance(value, list) else [value]:
            numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
            if kind in ("long", "float", "scaled_float") and not numeric and not (isinstance(v, str) and _is_number(v)):
                cause: str | None = f'For input string: "{v}"'
            elif kind == "date" and not (isinstance(v, str) and _is_date(v)):
                cause = f"failed to parse date field [{v}] with format [strict_date_optional_time||epoch_millis]"
            elif kind == "boolean" and not isinstance(v, bool):
                cause = f"Failed to parse value [{v}] as only [true] or [false] are allowed."
            else:
                continue
            reason = (
                f"failed to parse field [{path}] of type [{kind}] in document with id '{doc_id}'. "
                f"Preview of field's value: '{v}'"
            )
            return {
                "type": "document_parsing_exception",
                "reason": reason,
                "caused_by": {"type": "illegal_argument_exception", "reason": cause},
            }
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_date(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def main() -> None:
    """Run the stand-in on its own, for `trayllm bench --shipping` or trying `trayllm ship` by hand."""
    import argparse

    parser = argparse.ArgumentParser(description="Elasticsearch stand-in on 127.0.0.1 (testing only)")
    parser.add_argument("--port", type=int, default=9299)
    parser.add_argument("--version", default="8.19.3")
    args = parser.parse_args()
    standin = ElasticStandIn(args.version, port=args.port)
    print(f"Elasticsearch stand-in {args.version} on {standin.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        standin.close()


if __name__ == "__main__":
    main()
