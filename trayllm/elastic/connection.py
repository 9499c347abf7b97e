"""One way to reach Elasticsearch, with every failure turned into a one-line ``ElasticError`` that names the fix.

trayllm pins the official client at major 8 (``elasticsearch>=8,<9``). Client 8 sends
``compatible-with=8`` headers, which Elasticsearch 8 and 9 both accept. Client 9 would refuse an 8.x
server, so 8 is the major that serves both. ``check_version`` says so in one line for anything
else. Retries are off in the client: the shipper has its own backoff and must see every failure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from trayllm.config import Settings
from trayllm.errors import ConfigError, ElasticError
from trayllm.extras import require_extra
from trayllm.redact import mask_url_credentials

SUPPORTED_MAJORS = (8, 9)


@dataclass(frozen=True)
class ElasticTarget:
    """Where Elasticsearch is and how to authenticate (from settings or command-line flags)."""

    url: str
    api_key: str = ""
    username: str = ""
    password: str = ""
    ca_file: str = ""

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None) -> ElasticTarget:
        target = cls(
            url or settings.es_url, settings.es_api_key, settings.es_username, settings.es_password, settings.es_ca_file
        )
        if not target.url:
            raise ConfigError("no Elasticsearch URL: pass --es-url or set es_url (TRAYLLM_ES_URL)")
        if not target.url.startswith(("http://", "https://")):
            raise ConfigError(f"the Elasticsearch URL must start with http:// or https://, got {target.shown_url!r}")
        if target.api_key and target.username:
            raise ConfigError("give an API key or a user name and password, not both")
        return target

    @property
    def shown_url(self) -> str:
        """The URL as messages and logs show it: a password in it as ``***``."""
        return mask_url_credentials(self.url)

    def client(self, timeout: float = 30.0) -> Any:
        """An ``elasticsearch.Elasticsearch`` client for this target (imported here: an optional extra)."""
        with require_extra("Elasticsearch support"):  # a TrayllmError: the daemon's shipping reports it too
            from elasticsearch import Elasticsearch
        auth: dict[str, Any] = {}
        if self.api_key:
            auth["api_key"] = self.api_key
        elif self.username:
            auth["basic_auth"] = (self.username, self.password)
        if self.ca_file:
            auth["ca_certs"] = self.ca_file
        return Elasticsearch(self.url, request_timeout=timeout, max_retries=0, retry_on_timeout=False, **auth)


@contextlib.contextmanager
def elastic_errors(where: str) -> Iterator[None]:
    """Turn the client's exceptions into ``ElasticError`` with a message that says what to do (``where``, often
    the URL, without its password)."""
    from elasticsearch import (
        ApiError,
        AuthenticationException,
        AuthorizationException,
        ConnectionError,
        ConnectionTimeout,
        UnsupportedProductError,
    )

    where = mask_url_credentials(where)
    try:
        yield
    except AuthenticationException:
        raise _credentials_refused(where) from None
    except AuthorizationException as exc:
        raise ElasticError(
            f"{where}: the user may not do this (403: {_reason(exc)}); give it the privileges in docs/ELASTIC.md"
        ) from None
    except UnsupportedProductError:
        raise ElasticError(f"{where} is not Elasticsearch (no X-Elastic-Product header); check the URL") from None
    except ConnectionTimeout:
        raise ElasticError(f"{where} did not answer in time; is it overloaded?") from None
    except ConnectionError as exc:
        raise ElasticError(f"cannot reach {where} ({exc.message}); is it running, and is the URL right?") from None
    except ApiError as exc:
        raise ElasticError(f"{where} answered {exc.meta.status}: {_reason(exc)}") from None


def _credentials_refused(where: str) -> ElasticError:
    return ElasticError(f"{where} refused the credentials (401): check es_api_key or es_username/es_password")


def _reason(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return str(error.get("reason") or error.get("type") or body)
    return str(getattr(exc, "message", exc))


def check_version(es: Any, where: str) -> str:
    """The server's version number; ElasticError in one line when trayllm cannot use it.

    Asked through the transport with a plain ``application/json`` Accept header: any major answers that,
    where the client's compatibility header (which its API methods always send) would make a 7.x or 10.x
    server refuse before saying what it is.
    """
    where = mask_url_credentials(where)
    with elastic_errors(where):
        response = es.transport.perform_request("GET", "/", headers={**es._headers, "accept": "application/json"})
    status = response.meta.status
    if status == 401:
        raise _credentials_refused(where)
    info = response.body if isinstance(response.body, dict) else {}
    if status != 200 or response.meta.headers.get("x-elastic-product") != "Elasticsearch":
        raise ElasticError(f"{where} is not an Elasticsearch that trayllm can use (HTTP {status}); check the URL")
    number = str(info.get("version", {}).get("number", "?"))
    major = int(number.split(".")[0]) if number.split(".")[0].isdigit() else 0
    if major not in SUPPORTED_MAJORS:
        raise ElasticError(
            f"{where} runs Elasticsearch {number}; trayllm needs 8.x or 9.x (its client is 8.x, which both accept)"
        )
    return number
