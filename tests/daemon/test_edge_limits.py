"""Limits at the daemon's HTTP edge: no request, and no connection, can hurt another.

The body cap answers 413 before the rest of the body is read; JSON nested past ``max_json_depth`` is a
400 with a record, never a 500; a caller over its rate limit is refused before its prompt is tokenized;
tokenizing runs off the event loop; a connection that trickles its headers is closed; and a flood of
TCP connections leaves the Unix socket served.

The body cap, the depth limit and the order of rate limit and tokenizing are the HTTP layer's: they are checked
on a fake engine served in this process. Tokenizing off the event loop needs the real tokenizer's cost, and the
connection limits the real daemon process (``slow``).
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from daemons import RunningDaemon, spawn_daemon
from hypothesis import given
from hypothesis import strategies as st
from inprocess_daemon import InProcessDaemon
from waiting import wait_for

from trayllm.config import Settings
from trayllm.daemon.edge import json_deeper_than
from trayllm.telemetry.reader import iter_records

CHAT = b"POST /v1/chat/completions HTTP/1.1\r\nHost: trayllm\r\nContent-Type: application/json\r\n"
MEBIBYTE = 1 << 20
FLOOD = 1_100  # more connections than a daemon started with a soft limit of 1,024 open files can hold
STARTUP_FILE_LIMIT = 1_024  # what systemd gives a service unless told otherwise
TIGHT_CAP = 10


@dataclass
class RawResponse:
    status_code: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def exchange(daemon: RunningDaemon | InProcessDaemon, request: bytes, timeout: float = 10) -> RawResponse:
    """Send ``request`` over a fresh Unix connection, then read the response to the end of the connection,
    which the daemon closes after refusing a body."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(daemon.socket))
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return RawResponse(int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body)


def record_of(daemon: RunningDaemon | InProcessDaemon, request_id: str) -> dict:
    path = daemon.records

    def found() -> list[dict]:
        return [r for r in iter_records(path) if r["event"]["id"] == request_id]

    [record] = wait_for(found, timeout=30)
    return record


def assert_refused_with_record(
    daemon: RunningDaemon | InProcessDaemon, response: RawResponse | httpx.Response, status: int, code: str, needle: str
) -> None:
    """An OpenAI-shaped client error, and exactly one request record that says so."""
    assert response.status_code == status, response.headers
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == code, error
    assert needle in error["message"], error
    record = record_of(daemon, response.headers["x-request-id"])
    assert record["http"]["response"]["status_code"] == status
    assert record["event"]["outcome"] == "failure" and record["error"]["type"] == "invalid_request"


@pytest.fixture(scope="module")
def edge_daemon(tmp_path_factory: pytest.TempPathFactory, converted_model_dir: Path) -> Iterator[RunningDaemon]:
    """A daemon with the default limits, shared by the tests that do not need their own."""
    running = spawn_daemon(tmp_path_factory.mktemp("edge"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def tight_daemon(tmp_path_factory: pytest.TempPathFactory, converted_model_dir: Path) -> Iterator[RunningDaemon]:
    """TCP on with room for few connections and a patient header deadline."""
    running = spawn_daemon(
        tmp_path_factory.mktemp("tight"),
        listen=f"127.0.0.1:{free_port()}",
        max_tcp_connections=TIGHT_CAP,
        header_timeout_s=300,
    )
    yield running
    running.stop()


# -- the body cap -------------------------------------------------------------------------------------


def test_a_body_declared_over_the_cap_gets_413_before_the_rest_is_sent(fake_engine_daemon: InProcessDaemon) -> None:
    """50 MB announced, a few bytes sent: the answer comes at once (the old daemon waited for all 50 MB,
    and held them in memory, before it said 400)."""
    response = exchange(fake_engine_daemon, CHAT + b'Content-Length: 52428800\r\n\r\n{"messages": [')
    assert response.headers["connection"] == "close"
    assert_refused_with_record(fake_engine_daemon, response, 413, "request_too_large", "max_body_bytes")


def test_a_chunked_body_is_refused_at_the_chunk_that_passes_the_cap(fake_engine_daemon: InProcessDaemon) -> None:
    """No length is announced; the daemon counts as it reads and answers 413 without waiting for the end."""
    cap = Settings().max_body_bytes
    chunks = [f"{MEBIBYTE:x}\r\n".encode() + b" " * MEBIBYTE + b"\r\n" for _ in range(cap // MEBIBYTE)]
    over = f"{cap % MEBIBYTE + 1:x}\r\n".encode() + b" " * (cap % MEBIBYTE + 1)  # the byte past the cap, last
    response = exchange(fake_engine_daemon, b"".join([CHAT, b"Transfer-Encoding: chunked\r\n\r\n", *chunks, over]))
    assert_refused_with_record(fake_engine_daemon, response, 413, "request_too_large", "max_body_bytes")


# -- JSON depth ---------------------------------------------------------------------------------------


def test_json_nested_100000_deep_is_a_400_with_a_record(fake_engine_daemon: InProcessDaemon) -> None:
    body = b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with fake_engine_daemon.client() as client:
        response = client.post("/v1/chat/completions", content=body)
    assert_refused_with_record(fake_engine_daemon, response, 400, "invalid_request", "max_json_depth")


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


_TRICKY_TEXT = st.text(alphabet='[]{}"\\ a\n', max_size=8)  # brackets, quotes and escapes inside strings
_JSON_VALUES = st.recursive(
    st.none() | st.integers() | _TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TRICKY_TEXT, inner, max_size=3),
    max_leaves=30,
)


@given(value=_JSON_VALUES, ascii_only=st.booleans())
def test_the_depth_scan_agrees_with_the_parsed_document(value: object, ascii_only: bool) -> None:
    """Brackets inside strings, escaped quotes and escaped backslashes never fool the pre-parse scan."""
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    depth = _depth(value)
    for limit in {0, max(0, depth - 1), depth, depth + 1}:
        assert json_deeper_than(body, limit) is (depth > limit), (body, limit)


# -- tokenizing: off the event loop, after the rate limit -------------------------------------------------


@pytest.mark.slow
def test_healthz_answers_while_a_prompt_of_megabytes_is_tokenized(edge_daemon: RunningDaemon) -> None:
    """A 4 MB prompt takes seconds to tokenize (and is then too long for the context); /healthz, asked
    over and over meanwhile, answers each time within the acceptance limit of 1 s."""
    big = {"messages": [{"role": "user", "content": "word " * 800_000}], "max_tokens": 1}
    outcome: dict[str, object] = {}

    def post_big() -> None:
        outcome["started"] = time.monotonic()
        with edge_daemon.client() as client:
            outcome["response"] = client.post("/v1/chat/completions", json=big)
        outcome["ended"] = time.monotonic()

    worker = threading.Thread(target=post_big)
    waits: list[tuple[float, float]] = []  # (asked, answered) of each /healthz
    with edge_daemon.client() as client:
        worker.start()
        while worker.is_alive():
            asked = time.monotonic()
            assert client.get("/healthz").status_code == 200
            waits.append((asked, time.monotonic()))
    worker.join()
    response = outcome["response"]
    assert isinstance(response, httpx.Response)
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"
    meanwhile = [answered - asked for asked, answered in waits if asked < outcome["ended"]]
    big_took = outcome["ended"] - outcome["started"]
    assert len(meanwhile) >= 2, "the big request ended before /healthz could be asked twice"
    assert max(meanwhile) < 1.0, (max(meanwhile), big_took)
    assert max(meanwhile) < big_took / 2, "/healthz waited on the big request"


def test_a_caller_over_its_rate_limit_is_refused_before_its_prompt_is_tokenized(
    start_fake_engine_daemon: Callable[..., InProcessDaemon],
) -> None:
    """The old daemon tokenized first: an over-long prompt from a caller out of allowance got the 400 of
    the tokenizer's verdict, which it could only reach by doing the work. Now the 429 comes first."""
    tight_daemon = start_fake_engine_daemon(rate_limit_per_minute=0.6, rate_limit_burst=1)
    too_long = {"messages": [{"role": "user", "content": "word " * 40_000}], "max_tokens": 1}
    with tight_daemon.client() as client:
        first = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        )
        limited = client.post("/v1/chat/completions", json=too_long)
    assert first.status_code == 200, first.text
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["retry-after"]) >= 1
    assert record_of(tight_daemon, limited.headers["x-request-id"])["error"]["type"] == "rate_limited"


# -- connections: the TCP cap and the header deadline ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tcp_address(daemon: RunningDaemon) -> tuple[str, int]:
    host, _, port = daemon.env["TRAYLLM_LISTEN"].rpartition(":")
    return host, int(port)


def token_of(daemon: RunningDaemon) -> str:
    return (daemon.socket.parents[2] / "xdg_config_home" / "trayllm" / "token").read_text().strip()


def served_over_tcp(daemon: RunningDaemon) -> bool:
    """Whether a TCP client with the token gets /healthz answered (not its connection closed unanswered)."""
    host, port = tcp_address(daemon)
    try:
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as client:
            return client.get("/healthz", headers={"Authorization": f"Bearer {token_of(daemon)}"}).status_code == 200
    except httpx.TransportError:
        return False


def idle_connection(daemon: RunningDaemon) -> socket.socket:
    """A TCP connection to the daemon that sends nothing (non-blocking, for ``closed_by_peer``)."""
    sock = socket.create_connection(tcp_address(daemon), timeout=10)
    sock.setblocking(False)
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.slow
def test_tcp_connections_beyond_the_cap_are_closed_as_they_come(tight_daemon: RunningDaemon) -> None:
    """The connections under the cap stay open (the header deadline is long here); those over it are closed
    at once; a place that frees up is given to the next client."""
    held = [idle_connection(tight_daemon) for _ in range(TIGHT_CAP)]
    extra = [idle_connection(tight_daemon) for _ in range(5)]
    try:
        wait_for(lambda: all(map(closed_by_peer, extra)), timeout=10)
        assert not any(map(closed_by_peer, held))
        assert not served_over_tcp(tight_daemon)
        held.pop().close()
        wait_for(lambda: served_over_tcp(tight_daemon), timeout=10)
    finally:
        for sock in held + extra:
            sock.close()


@contextlib.contextmanager
def soft_file_limit(limit: int) -> Iterator[None]:
    """This process's soft limit on open files set to ``limit`` (children started meanwhile inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Trickler(threading.Thread):
    """Sends a request head one byte a second, never finishing it, until the daemon closes the connection."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(address, timeout=10)
        self.opened = time.monotonic()
        self.closed: float | None = None

    def run(self) -> None:
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
        for byte in head:
            try:
                self.sock.send(bytes([byte]))
                self.sock.settimeout(1.0)
                if self.sock.recv(1) == b"":
                    break
            except TimeoutError:
                continue  # still open: the next byte
            except OSError:  # reset or broken pipe: closed
                break
        self.closed = time.monotonic()
        self.sock.close()


@pytest.mark.slow
def test_a_tcp_flood_and_a_trickling_client_leave_the_unix_socket_served(start_daemon) -> None:
    """Acceptance, with the default limits: a daemon started with systemd's soft limit of 1,024 open files
    and TCP on; 1,100 idle connections from a client without the token and one that trickles its headers.
    A Unix-socket request is answered in under 1 s, the trickler is closed within 30 s, the daemon's log
    stays small, and once the flood is gone a TCP client with the token is served again."""
    with soft_file_limit(resource.getrlimit(resource.RLIMIT_NOFILE)[1]):  # this test holds 1,100 sockets
        with soft_file_limit(STARTUP_FILE_LIMIT):
            daemon = start_daemon(listen=f"127.0.0.1:{free_port()}")
        trickler = Trickler(tcp_address(daemon))
        trickler.start()
        flood: list[socket.socket] = []
        try:
            for _ in range(FLOOD):
                flood.append(idle_connection(daemon))
            asked = time.monotonic()
            with daemon.client(timeout=10) as client:
                health = client.get("/healthz")
            waited = time.monotonic() - asked
            assert health.status_code == 200 and waited < 1.0, waited
            trickler.join(timeout=40)
            assert trickler.closed is not None and trickler.closed - trickler.opened < 30
        finally:
            for sock in flood:
                sock.close()
    assert daemon.log.stat().st_size < MEBIBYTE, "the daemon's log filled up"
    assert wait_for(lambda: served_over_tcp(daemon), timeout=30)
