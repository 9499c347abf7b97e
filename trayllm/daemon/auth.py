"""Bearer tokens for loopback TCP, and the guard that keeps web pages out (DNS rebinding, CSRF).

The Unix socket needs none of this: its permissions and SO_PEERCRED already say who calls.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from trayllm.errors import Forbidden, Unauthorized

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def ensure_token(path: Path) -> str:
    """Read the token file, creating it (0600) with a fresh random token the first time."""
    if path.is_file():
        token = path.read_text().strip()
        if token:
            return token
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def _host_only(value: str) -> str:
    value = value.split("://", 1)[-1].split("/", 1)[0]
    if value.startswith("["):
        return value[: value.find("]") + 1]
    return value.rsplit(":", 1)[0] if ":" in value else value


def check_tcp_request(headers: dict[str, str], token: str) -> None:
    """Refuse a TCP request with a foreign Host/Origin or without the right bearer token."""
    host = headers.get("host", "")
    if _host_only(host) not in LOOPBACK_HOSTS:
        raise Forbidden(f"Host {host!r} is not a loopback name; trayllm only answers 127.0.0.1/localhost")
    origin = headers.get("origin")
    if origin is not None and _host_only(origin) not in LOOPBACK_HOSTS:
        raise Forbidden(f"Origin {origin!r} is not allowed")
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("missing or wrong bearer token; it is in the daemon's token file (`trayllm config show`)")
