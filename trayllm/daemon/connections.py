"""What one connection may cost the daemon: a deadline for its request head, and a cap on TCP connections.

h11 has no timeout of its own, so a client that trickles its headers a byte at a time would hold its
connection (a file descriptor) for ever; and every descriptor the TCP side takes is one the Unix socket
cannot accept with. So a request line and headers must be complete within ``header_timeout_s`` of the
connection opening or, on a kept-alive connection, of their first byte (until then the connection is idle,
and uvicorn closes it after ``keep_alive_timeout_s``); and TCP connections beyond ``max_tcp_connections``
are closed the moment they are accepted. The Unix socket is not capped: only the user's own processes can
reach it.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time
from typing import Any

import h11

from trayllm.daemon.sockets import PeerCredProtocol

log = logging.getLogger(__name__)

ACCEPT_BURST = 128
"""The listen backlog, which is also how many connections asyncio accepts per wake-up: it bounds the
descriptors a burst of connections holds before the cap closes the ones over it."""
REFUSAL_LOG_INTERVAL_S = 60.0  # a flood of refused connections logs one line a minute, not one per connection


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (systemd starts services at a soft
    1024 with a far higher hard limit) and return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # an unlimited hard limit is more than the kernel allows as a soft one
        return soft
    return hard


class ConnectionLimits:
    """The limits all connections of one daemon share, and the count of open TCP connections."""

    def __init__(self, header_timeout_s: float, max_tcp_connections: int, open_files: int) -> None:
        self.header_timeout_s = header_timeout_s
        # half the descriptors at most: the rest are for the Unix socket, the model, the logs and accept bursts
        self.max_tcp_connections = min(max_tcp_connections, open_files // 2)
        if self.max_tcp_connections < max_tcp_connections:
            log.warning(
                "max_tcp_connections lowered to %d: this process may open only %d files",
                self.max_tcp_connections,
                open_files,
            )
        self.tcp_open = 0
        self._refused = 0
        self._refusal_logged = -REFUSAL_LOG_INTERVAL_S

    def open_tcp(self) -> bool:
        """Count a new TCP connection in, or say no (and log it, at most once a minute) when it is one too many."""
        if self.tcp_open < self.max_tcp_connections:
            self.tcp_open += 1
            return True
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_INTERVAL_S:
            log.warning(
                "closing new TCP connections: %d are open (max_tcp_connections); %d refused",
                self.tcp_open,
                self._refused,
            )
            self._refusal_logged, self._refused = now, 0
        return False

    def close_tcp(self) -> None:
        self.tcp_open -= 1


class GuardedProtocol(PeerCredProtocol):
    """The daemon's HTTP protocol: PeerCredProtocol with the request-head deadline and the TCP cap."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._tcp = False
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn narrows it
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            self._tcp = self.limits.open_tcp()
            if not self._tcp:
                transport.close()
                return
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._tcp:
            self.limits.close_tcp()
            self._tcp = False
        self._stop_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def _watch_head(self) -> None:
        """Run the deadline while a request head is owed or coming in; stop it once the head is complete.

        The deadline is not moved by data that arrives meanwhile: that is what a trickling client sends.
        """
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            self._stop_head_deadline()
        elif self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def _stop_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
