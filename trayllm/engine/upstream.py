"""Which OpenAI-compatible server a remote engine forwards to, and with which key: from the ``engine_*``
settings (or, with several engines, from an ``[[engines]]`` table)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trayllm.config import Settings
from trayllm.errors import ConfigError


@dataclass(frozen=True)
class Upstream:
    """One OpenAI-compatible server to forward to: the ``engine_*`` settings, or an ``[[engines]]`` table."""

    url: str
    model: str = ""  # empty: the first its /models lists
    api_key: str = ""
    name: str = "remote"

    @classmethod
    def from_settings(cls, settings: Settings) -> Upstream:
        return cls(settings.engine_url, settings.engine_model, read_api_key(settings.engine_api_key_file))


def read_api_key(path: str) -> str:
    """The first line of the key file; ConfigError naming the file when it cannot be read."""
    if not path:
        return ""
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").strip().splitlines()[0].strip()
    except (OSError, IndexError, UnicodeDecodeError) as exc:
        raise ConfigError(f"engine_api_key_file {path}: cannot read a key from it ({exc})") from None
