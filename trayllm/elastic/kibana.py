"""Putting trayllm's dashboards into Kibana through its saved-objects import API.

Kibana is not Elasticsearch: it has its own HTTP API, so this talks to it with httpx (already a dependency)
rather than the Elasticsearch client. One call, ``POST /api/saved_objects/_import?overwrite=true``, sends the
packaged ``assets/dashboards.ndjson`` as a multipart file; ``overwrite`` makes a re-import after an upgrade
replace the old objects instead of reporting conflicts.

Two kinds of failure, kept apart because the caller does different things with them:

- Kibana could not be asked (unreachable, TLS, time-out), refused us (401/403), or did not answer like Kibana
  (an HTML login page, Elasticsearch's port, a 5xx, "Kibana server is not ready yet"): ``ElasticError``, one
  line that says what to fix.
- Kibana took the request but some objects failed: it answers **200** with ``"success": false`` and an
  ``errors`` list (a reference to a missing object, a type it does not know, an object from a newer Kibana).
  Those come back in ``ImportResult.errors``, one entry per object, because the other objects did import.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import httpx

from trayllm.errors import ElasticError
from trayllm.redact import mask_url_credentials

SPACE_ID = re.compile(r"^[a-z0-9_-]+$")
"""Kibana's rule for space ids (lowercase letters, digits, ``_`` and ``-``)."""


def dashboards_ndjson() -> bytes:
    """The saved objects shipped with trayllm (package data, so it is there after any kind of install)."""
    return (resources.files("trayllm.elastic") / "assets" / "dashboards.ndjson").read_bytes()


@dataclass(frozen=True)
class ObjectError:
    """One saved object Kibana did not import, and why (Kibana's ``errors[]`` entry)."""

    type: str
    id: str
    title: str | None
    error_type: str  # missing_references, unsupported_type, conflict, ambiguous_conflict, unknown
    message: str | None = None
    missing_references: tuple[tuple[str, str], ...] = ()  # (type, id) of each reference Kibana could not find

    def __str__(self) -> str:
        name = f"{self.type} {self.id!r}" + (f" ({self.title})" if self.title else "")
        if self.missing_references:
            detail = "missing " + ", ".join(f"{t} {i!r}" for t, i in self.missing_references)
        else:
            detail = self.message or ""
        return f"{name}: {self.error_type}" + (f": {detail}" if detail else "")


@dataclass
class ImportResult:
    """What Kibana said about an import that it accepted (HTTP 200)."""

    success_count: int
    errors: list[ObjectError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    imported: list[tuple[str, str]] = field(default_factory=list)  # (type, id) as stored in Kibana
    success: bool = True  # Kibana's own ``success`` flag

    @property
    def ok(self) -> bool:
        """Every object imported."""
        return self.success and not self.errors

    def summary(self) -> str:
        """One line for the command line."""
        if self.ok:
            return f"imported {self.success_count} saved objects"
        return f"imported {self.success_count} saved objects, {len(self.errors)} failed"


def import_dashboards(
    kibana_url: str,
    ndjson: bytes | None = None,
    *,
    api_key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
    space: str | None = None,
    timeout: float = 30,
) -> ImportResult:
    """Import ``ndjson`` (default: trayllm's packaged dashboards) into Kibana at ``kibana_url``, overwriting.

    ``space`` imports into that Kibana space (``/s/<space>/api/...``); none or ``default`` is the default
    space. Authenticate with ``api_key`` (``Authorization: ApiKey``) or ``username``/``password`` (basic);
    ``ca_file`` verifies an https Kibana signed by a private CA. Raises ``ElasticError`` when Kibana cannot
    be reached, refuses the credentials or does not answer with its import result; per-object failures are
    in the returned ``ImportResult.errors``.
    """
    body = dashboards_ndjson() if ndjson is None else ndjson
    url = _import_url(kibana_url, space)
    where = f"Kibana at {mask_url_credentials(kibana_url.strip().rstrip('/'))}"
    headers = {"kbn-xsrf": "true"}  # Kibana refuses state-changing API calls without it (CSRF guard)
    auth: tuple[str, str] | None = None
    if api_key and username:
        raise ElasticError("give Kibana an API key or a user name and password, not both")
    if api_key:
        headers["Authorization"] = f"ApiKey {api_key}"
    elif username:
        if password is None:
            raise ElasticError(f"a user name for Kibana ({username!r}) needs a password too")
        auth = (username, password)
    verify = _verify(ca_file)
    files = {"file": ("trayllm-dashboards.ndjson", body, "application/ndjson")}  # Kibana wants *.ndjson
    try:
        with httpx.Client(timeout=timeout, verify=verify, auth=auth) as client:
            response = client.post(url, params={"overwrite": "true"}, files=files, headers=headers)
    except httpx.TimeoutException:
        raise ElasticError(f"{where} did not answer within {timeout:g} s; is it still starting?") from None
    except httpx.ConnectError as exc:
        reason = _one_line(str(exc)) or type(exc).__name__
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            raise ElasticError(
                f"{where}: its TLS certificate cannot be verified ({reason}); pass the CA file that signed it (ca_file)"
            ) from None
        raise ElasticError(f"cannot reach {where} ({reason}); is Kibana running, and is the URL right?") from None
    except httpx.HTTPError as exc:
        raise ElasticError(
            f"talking to {where} failed ({_one_line(str(exc)) or type(exc).__name__}); check the URL and retry"
        ) from None
    return _read_result(response, where)


def _import_url(kibana_url: str, space: str | None) -> str:
    base = kibana_url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ElasticError(
            f"the Kibana URL must start with http:// or https://, got {mask_url_credentials(kibana_url)!r}"
        )
    if space and space != "default":
        if not SPACE_ID.match(space):
            raise ElasticError(f"{space!r} is not a Kibana space id (lowercase letters, digits, '_' and '-')")
        base = f"{base}/s/{space}"
    return f"{base}/api/saved_objects/_import"


def _verify(ca_file: str | None) -> ssl.SSLContext | bool:
    if not ca_file:
        return True
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ElasticError(
            f"cannot use the CA file {ca_file} ({_one_line(str(exc))}); give a PEM certificate file"
        ) from None


def _one_line(text: Any, limit: int = 300) -> str:
    """Kibana's messages may hold newlines and tabs (security exceptions do): one line, bounded."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(response: httpx.Response, body: Any) -> str:
    """Kibana's error text: ``message`` of its ``{statusCode, error, message}`` body, else the body itself."""
    if isinstance(body, dict) and body.get("message"):
        return _one_line(body["message"])
    return _one_line(response.text, 200) or response.reason_phrase


def _read_result(response: httpx.Response, where: str) -> ImportResult:
    status = response.status_code
    body = _json(response)
    if response.headers.get("x-elastic-product") == "Elasticsearch":
        raise ElasticError(f"{where} is Elasticsearch, not Kibana; give Kibana's URL (port 5601 by default)")
    if status == 401:
        raise ElasticError(
            f"{where} refused the credentials (401: {_message(response, body)}); give a valid API "
            "key, or a user name and password"
        )
    if status == 403:
        raise ElasticError(
            f"{where}: this user may not import saved objects (403: {_message(response, body)}); "
            "give it the Kibana privilege Saved Objects Management: All in that space"
        )
    if status == 404:
        raise ElasticError(
            f"{where} has no saved-objects import API at {response.request.url.path} "
            f"(404: {_message(response, body)}); check the URL and the space id"
        )
    if status == 503:
        raise ElasticError(
            f"{where} is not ready (503: {_message(response, body)}); wait until it has started, then retry"
        )
    if status >= 500:
        raise ElasticError(f"{where} failed (HTTP {status}: {_message(response, body)}); see Kibana's log, then retry")
    if not response.is_success:
        raise ElasticError(f"{where} rejected the import (HTTP {status}: {_message(response, body)})")
    if not isinstance(body, dict) or "successCount" not in body:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise ElasticError(
            f"{where} answered HTTP {status} with {kind}, not Kibana's import result; is the "
            "URL Kibana's own (not a proxy's login page)?"
        )
    return ImportResult(
        success_count=int(body.get("successCount") or 0),
        errors=[_object_error(e) for e in body.get("errors") or [] if isinstance(e, dict)],
        warnings=[
            _one_line(w.get("message", w)) if isinstance(w, dict) else _one_line(w) for w in body.get("warnings") or []
        ],
        imported=[
            (str(r.get("type")), str(r.get("destinationId") or r.get("id")))
            for r in body.get("successResults") or []
            if isinstance(r, dict)
        ],
        success=bool(body.get("success", True)),
    )


def _object_error(entry: dict[str, Any]) -> ObjectError:
    error = entry["error"] if isinstance(entry.get("error"), dict) else {}
    meta = entry["meta"] if isinstance(entry.get("meta"), dict) else {}
    title = meta.get("title") or entry.get("title")
    message = error.get("message")
    return ObjectError(
        type=str(entry.get("type", "?")),
        id=str(entry.get("id", "?")),
        title=str(title) if title else None,
        error_type=str(error.get("type", "unknown")),
        message=_one_line(message) if message else None,
        missing_references=tuple(
            (str(r.get("type", "?")), str(r.get("id", "?")))
            for r in error.get("references") or []
            if isinstance(r, dict)
        ),
    )
