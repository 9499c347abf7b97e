"""A stand-in for the Hugging Face hub's file API, on loopback, for `trayllm pull` tests (no network).

It answers what huggingface_hub 2.x sends, byte for byte where it matters:

- ``GET /api/models/{org}/{name}/revision/{rev}`` (``HfApi.model_info``, ``?blobs=True`` for sizes): the repo's
  id, commit ``sha`` and ``siblings`` with ``rfilename`` and ``size``, and for weights (the files the hub keeps
  in LFS: .safetensors, .bin, .gguf) ``lfs`` with their ``sha256``;
- ``HEAD`` and ``GET /{org}/{name}/resolve/{rev}/{file}`` (``hf_hub_download``): ``X-Repo-Commit``, a quoted
  ``ETag`` (the content's sha256, as the hub gives LFS files) and ``Content-Length``; a ``Range: bytes=N-`` GET
  answers 206 with ``Content-Range``;
- an unknown repo or file is a 404 with the hub's ``X-Error-Code`` (RepoNotFound, EntryNotFound), which
  huggingface_hub turns into its typed errors.

Faults, to test what a pull does when the network misbehaves: ``cut_once[file] = n`` sends the first GET of
``file`` its full Content-Length but only ``n`` bytes, then drops the connection; ``stall[file] = n`` sends
``n`` bytes and then holds the connection until ``release`` is set (a download in flight, to interrupt). Every
request is kept in ``requests`` (method, path, headers) for the tests to read.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the one commit each stand-in repo has
_API = re.compile(r"/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/?]+)")
_RESOLVE = re.compile(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>[^?]+)")
_RANGE = re.compile(r"bytes=(\d+)-$")
_LFS = (".safetensors", ".bin", ".gguf")  # what the hub's repos keep in LFS, listed with their sha256


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: Mapping[str, str]


@dataclass
class HubStandin:
    """The server's state: repos (repo id -> file name -> content: bytes, or a Path read when served), faults and
    the requests seen."""

    repos: dict[str, dict[str, bytes | Path]]
    cut_once: dict[str, int] = field(default_factory=dict)
    stall: dict[str, int] = field(default_factory=dict)
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[Seen] = field(default_factory=list)
    url: str = ""

    def gets(self, file: str) -> list[Seen]:
        """The GET requests for ``file`` of any repo, in order."""
        return [
            r for r in self.requests if r.method == "GET" and (m := _RESOLVE.fullmatch(r.path)) and m["file"] == file
        ]


def _size(data: bytes | Path) -> int:
    return data.stat().st_size if isinstance(data, Path) else len(data)


def _etag(data: bytes | Path) -> str:
    digest = hashlib.sha256()
    if isinstance(data, Path):
        with data.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(data)
    return digest.hexdigest()


def _handler(hub: HubStandin, etags: dict[tuple[str, str], str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet: pytest shows failures, not traffic
            pass

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            hub.requests.append(Seen(self.command, self.path, dict(self.headers)))
            path = self.path.split("?")[0]
            if match := _API.fullmatch(path):
                self._model_info(match["repo"])
            elif match := _RESOLVE.fullmatch(path):
                self._file(match["repo"], match["file"], body)
            else:
                self._error(404, "EntryNotFound")

        def _model_info(self, repo: str) -> None:
            if repo not in hub.repos:
                self._error(404, "RepoNotFound")
                return
            files = sorted(hub.repos[repo].items())
            siblings = [_sibling(name, _size(data), etags[(repo, name)]) for name, data in files]
            payload = json.dumps({"id": repo, "sha": COMMIT, "siblings": siblings}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _file(self, repo: str, name: str, body: bool) -> None:
            if repo not in hub.repos:
                self._error(404, "RepoNotFound")
                return
            if name not in hub.repos[repo]:
                self._error(404, "EntryNotFound")
                return
            data = hub.repos[repo][name]
            size = _size(data)
            start = 0
            if body and (match := _RANGE.fullmatch(self.headers.get("Range", ""))):
                start = int(match[1])
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{etags[(repo, name)]}"')
            self.send_header("Content-Length", str(size - start))
            self.send_header("Accept-Ranges", "bytes")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            if body:
                self._send_body(data, name, start, size)

        def _send_body(self, data: bytes | Path, name: str, start: int, size: int) -> None:
            cut, stall = hub.cut_once.pop(name, None), hub.stall.pop(name, None)
            sent = next((n for n in (cut, stall) if n is not None), size - start)
            for chunk in _chunks(data, start, start + sent):
                self.wfile.write(chunk)
            self.wfile.flush()
            if stall is not None:
                hub.stalled.set()
                hub.release.wait(timeout=60)
            self.close_connection = True  # short of Content-Length: the client sees the connection dropped

        def _error(self, status: int, code: str) -> None:
            payload = json.dumps({"error": code}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def _sibling(name: str, size: int, sha256: str) -> dict[str, object]:
    """A file as the hub's listing has it: an LFS one with its content's sha256."""
    lfs = {"lfs": {"sha256": sha256, "size": size, "pointerSize": 134}} if name.endswith(_LFS) else {}
    return {"rfilename": name, "size": size, **lfs}


def _chunks(data: bytes | Path, start: int, stop: int) -> Iterator[bytes]:
    if isinstance(data, bytes):
        yield data[start:stop]
        return
    with data.open("rb") as fh:
        fh.seek(start)
        left = stop - start
        while left > 0:
            block = fh.read(min(left, 1 << 20))
            if not block:
                return
            left -= len(block)
            yield block


@contextmanager
def running(hub: HubStandin) -> Iterator[HubStandin]:
    """Serve ``hub`` on a free loopback port (``hub.url``) until the block ends; then the port refuses."""
    etags = {(repo, name): _etag(data) for repo, files in hub.repos.items() for name, data in files.items()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub, etags))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield hub
    finally:
        hub.release.set()
        server.shutdown()
        server.server_close()
        thread.join()
