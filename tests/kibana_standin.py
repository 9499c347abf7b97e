"""A Kibana stand-in that speaks the saved-objects import API over real HTTP on 127.0.0.1.

No Kibana can be installed here (no package ships one), and a mocked httpx would not test what matters: the
multipart upload, the ``kbn-xsrf`` header, authentication, and Kibana's habit of answering **200** with
``"success": false`` and per-object errors. So this is a small HTTP server with the import route's wire
behaviour, from Kibana 8.x's ``import_saved_objects`` route and its documented response:

- ``POST [/s/<space>]/api/saved_objects/_import[?overwrite=true]``, multipart field ``file`` whose file name
  must end in ``.ndjson``; without ``kbn-xsrf``: 400; wrong or missing credentials (when configured): 401
  with Kibana's multi-line ``security_exception`` message; an unknown space: 404.
- Per object, in Kibana's order: an unknown ``type`` → ``unsupported_type``; a reference to an object that
  is neither in the file nor already stored → ``missing_references``; an existing id without ``overwrite`` →
  ``conflict``; a version stamp newer than this Kibana, or dashboard attributes its create schema refuses
  (unknown keys, ``*JSON`` not a string) → ``unknown`` with ``statusCode`` 400. The rest are stored.
- ``script`` answers the next requests with anything (a 500, a 503 "Kibana server is not ready yet",
  an HTML page with 200, Elasticsearch's product header, a slow answer) before the route runs.

What it does not model: migrations, spaces' sharing rules, ``createNewCopies`` id regeneration, and version
stamps of model versions (``10.x``), which it reports as too new.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

KNOWN_TYPES = frozenset(
    {"index-pattern", "lens", "dashboard", "visualization", "search", "config", "tag", "map", "query", "links"}
)
ICONS = {"index-pattern": "indexPatternApp", "lens": "lensApp", "dashboard": "dashboardApp"}
DASHBOARD_ATTRIBUTES = frozenset(
    {
        "title",
        "description",
        "kibanaSavedObjectMeta",
        "timeRestore",
        "timeFrom",
        "timeTo",
        "refreshInterval",
        "controlGroupInput",
        "panelsJSON",
        "optionsJSON",
        "hits",
        "version",
    }
)
"""Kibana 8.x's dashboard create schema (``unknowns: 'forbid'``)."""

IMPORT_PATH = re.compile(r"^(?:/s/(?P<space>[^/]+))?/api/saved_objects/_import$")


@dataclass(frozen=True)
class Scripted:
    """A canned answer for one request."""

    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (for time-outs)


@dataclass
class RecordedRequest:
    """One request as the stand-in saw it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    filename: str | None = None
    ndjson: bytes | None = None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _json_type(value: Any) -> str:
    return {dict: "Object", list: "Array", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )


@dataclass
class KibanaStandin:
    """The server. Use as a context manager; ``url`` is where it listens."""

    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    version: str = "8.19.0"
    spaces: tuple[str, ...] = ("default", "team")
    store: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (space, type, id) -> object
    requests: list[RecordedRequest] = field(default_factory=list)
    script: list[Scripted] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------------------

    def __enter__(self) -> KibanaStandin:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                standin._handle(self)

            do_GET = do_PUT = do_DELETE = do_POST  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="kibana-standin", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None, "use the stand-in as a context manager"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def seed(self, obj: Mapping[str, Any], space: str = "default") -> None:
        """Store an object as if it had been imported before."""
        self.store[(space, obj["type"], obj["id"])] = dict(obj)

    # -- the route ----------------------------------------------------------------------------------------

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(http.path)
        body = self._read_body(http)
        headers = {k.lower(): v for k, v in http.headers.items()}
        recorded = RecordedRequest(http.command, parts.path, parse_qs(parts.query), headers)
        with self._lock:
            self.requests.append(recorded)
            scripted = self.script.pop(0) if self.script else None
        if scripted is not None:
            time.sleep(scripted.delay)
            return self._send(http, scripted.status, scripted.body, scripted.content_type, scripted.headers)
        match = IMPORT_PATH.match(parts.path)
        if http.command != "POST" or match is None:
            return self._error(http, 404, "Not Found", "Not Found")
        unauthorized = self._authenticate(headers)
        if unauthorized is not None:
            return self._error(
                http,
                401,
                "Unauthorized",
                unauthorized,
                {"WWW-Authenticate": 'Basic realm="security" charset="UTF-8", ApiKey'},
            )
        space = match.group("space") or "default"
        if space not in self.spaces:
            return self._error(http, 404, "Not Found", f"Saved object [space/{space}] not found")
        if "kbn-xsrf" not in headers:
            return self._error(http, 400, "Bad Request", "Request must contain a kbn-xsrf header.")
        query = recorded.query
        overwrite = query.get("overwrite", ["false"])[-1] == "true"
        if overwrite and query.get("createNewCopies", ["false"])[-1] == "true":
            return self._error(http, 400, "Bad Request", "cannot use [overwrite] with [createNewCopies]")
        content_type = headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return self._error(http, 415, "Unsupported Media Type", "Unsupported Media Type")
        upload = self._file_part(content_type, body)
        if upload is None:
            return self._error(
                http, 400, "Bad Request", "[request body.file]: expected value of type [Stream] but got [undefined]"
            )
        filename, data = upload
        recorded.filename, recorded.ndjson = filename, data
        extension = ("." + filename.rsplit(".", 1)[-1]) if "." in filename else ""
        if extension != ".ndjson":
            return self._error(http, 400, "Bad Request", f"Invalid file extension {extension}")
        try:
            objects = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self._error(http, 400, "Bad Request", f"Unexpected token in JSON: {exc}")
        objects = [o for o in objects if isinstance(o, dict) and "exportedCount" not in o]
        result = self._import(space, objects, overwrite)
        return self._send(http, 200, json.dumps(result).encode())

    def _authenticate(self, headers: Mapping[str, str]) -> str | None:
        """None when the request may pass; else Kibana's 401 message."""
        if self.api_key is None and self.username is None:
            return None
        given = headers.get("authorization")
        if given is None:
            return "Unauthorized"
        if self.api_key is not None and given == f"ApiKey {self.api_key}":
            return None
        if self.username is not None:
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            if given == f"Basic {expected}":
                return None
        who = self.username or "_api_key"
        return (
            f"[security_exception\n\tRoot causes:\n\t\tsecurity_exception: unable to authenticate user [{who}] "
            f"for REST request [/_security/_authenticate]]: unable to authenticate user [{who}] for REST "
            "request [/_security/_authenticate]"
        )

    def _import(self, space: str, objects: list[dict[str, Any]], overwrite: bool) -> dict[str, Any]:
        in_file = {(o.get("type"), o.get("id")) for o in objects}
        errors: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for obj in objects:
            kind, obj_id = str(obj.get("type")), str(obj.get("id"))
            meta = {"title": self._title(obj), "icon": ICONS.get(kind, "questionInCircle")}
            entry = {"id": obj_id, "type": kind, "title": meta["title"], "meta": meta}
            if kind not in KNOWN_TYPES:
                errors.append({**entry, "error": {"type": "unsupported_type"}})
                continue
            missing = [
                {"type": r.get("type"), "id": r.get("id")}
                for r in obj.get("references") or []
                if (r.get("type"), r.get("id")) not in in_file and (space, r.get("type"), r.get("id")) not in self.store
            ]
            if missing:
                errors.append({**entry, "error": {"type": "missing_references", "references": missing}})
                continue
            exists = (space, kind, obj_id) in self.store
            if exists and not overwrite:
                errors.append({**entry, "error": {"type": "conflict"}})
                continue
            problem = self._create_problem(obj)
            if problem is not None:
                errors.append({**entry, "error": {"type": "unknown", "message": problem, "statusCode": 400}})
                continue
            with self._lock:
                self.store[(space, kind, obj_id)] = obj
            results.append({"type": kind, "id": obj_id, "meta": meta, **({"overwrite": True} if exists else {})})
        response: dict[str, Any] = {"successCount": len(results), "success": not errors, "warnings": []}
        if results:
            response["successResults"] = results
        if errors:
            response["errors"] = errors
        return response

    def _create_problem(self, obj: Mapping[str, Any]) -> str | None:
        """Why Kibana's bulk create would refuse the object (migration or create-schema validation), or None."""
        kind = obj["type"]
        stamps = [
            obj.get("coreMigrationVersion"),
            obj.get("typeMigrationVersion"),
            (obj.get("migrationVersion") or {}).get(kind),
        ]
        for stamp in stamps:
            if isinstance(stamp, str) and _version(stamp) > _version(self.version):
                return (
                    f'Document "{obj["id"]}" belongs to a more recent version of Kibana [{stamp}] when the last '
                    f"known version is [{self.version}]."
                )
        attributes = obj.get("attributes")
        if not isinstance(attributes, dict):
            return "[attributes]: expected a plain object value, but found [null] instead."
        if kind == "dashboard":
            for key, value in attributes.items():
                if key not in DASHBOARD_ATTRIBUTES:
                    return f"[attributes.{key}]: definition for this key is missing"
                if key.endswith("JSON") and not isinstance(value, str):
                    return f"[attributes.{key}]: expected value of type [string] but got [{_json_type(value)}]"
            meta = attributes.get("kibanaSavedObjectMeta") or {}
            if "searchSourceJSON" in meta and not isinstance(meta["searchSourceJSON"], str):
                return (
                    "[attributes.kibanaSavedObjectMeta.searchSourceJSON]: expected value of type [string] but "
                    f"got [{_json_type(meta['searchSourceJSON'])}]"
                )
            if not isinstance(attributes.get("title"), str):
                return "[attributes.title]: expected value of type [string] but got [undefined]"
        return None

    @staticmethod
    def _title(obj: Mapping[str, Any]) -> str:
        attributes = obj.get("attributes") if isinstance(obj.get("attributes"), dict) else {}
        return str(attributes.get("name") or attributes.get("title") or obj.get("id"))

    # -- HTTP plumbing ------------------------------------------------------------------------------------

    @staticmethod
    def _read_body(http: BaseHTTPRequestHandler) -> bytes:
        if http.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(http.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    http.rfile.readline()
                    return b"".join(chunks)
                chunks.append(http.rfile.read(size))
                http.rfile.readline()
        return http.rfile.read(int(http.headers.get("Content-Length") or 0))

    @staticmethod
    def _file_part(content_type: str, body: bytes) -> tuple[str, bytes] | None:
        """The multipart field ``file``: (file name, content)."""
        message = BytesParser(policy=policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body
        )
        if not message.is_multipart():
            return None
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                return part.get_filename() or "", part.get_payload(decode=True) or b""
        return None

    def _error(
        self,
        http: BaseHTTPRequestHandler,
        status: int,
        error: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        body = json.dumps({"statusCode": status, "error": error, "message": message}).encode()
        self._send(http, status, body, headers=headers)

    @staticmethod
    def _send(
        http: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str = "application/json; charset=utf-8",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        http.send_response(status)
        http.send_header("Content-Type", content_type)
        http.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            http.send_header(name, value)
        http.end_headers()
        http.wfile.write(body)
