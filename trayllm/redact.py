"""Credentials written into URLs (``https://user:password@host:9200``), hidden wherever a URL is shown or logged.

Elasticsearch and Kibana accept a user and password inside the URL, so ``es_url`` or ``kibana_url`` may
carry a secret that `config show`, the daemon's log, error messages and `trayllm status` must not print.
The user name stays (it says which account is used); the password becomes ``***``. A URL with only one
part before the ``@`` may be a token used as a user name, so all of it is hidden.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://userinfo@ — up to the last '@' before the path (a password may hold a raw '@'); found anywhere, so a
# message quoting a URL is masked as well as the bare URL
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@")


def _masked(match: re.Match[str]) -> str:
    user, colon, _ = match.group("userinfo").partition(":")
    return f"{match.group('scheme')}{user}:{MASK}@" if colon else f"{match.group('scheme')}{MASK}@"


def mask_url_credentials(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (``http://elastic:***@es:9200``)."""
    return _USERINFO.sub(_masked, text)


def has_url_credentials(text: str) -> bool:
    """Whether ``text`` holds a URL with credentials in it (which makes it a secret to keep private)."""
    return _USERINFO.search(text) is not None
