"""``[[engines]]`` tables: several engines served by one daemon (the local model and OpenAI-compatible servers).

The one Settings table holds scalars that are also ``TRAYLLM_*`` variables; a list of engines is neither, so it
lives here, read from the same config file. Without ``[[engines]]`` the daemon serves one engine from the
``engine_*`` settings, as before. With them, the first table is the default engine (the one a request without a
``model`` goes to), and each table is one of::

    [[engines]]
    name = "desk"        # names the engine in records, alerts, status and /v1/models' engine field
    local = true         # the model this daemon hosts itself (the model* settings); at most one

    [[engines]]
    name = "server"
    url = "http://gpu-box:8000/v1"     # an OpenAI-compatible base URL
    model = "Qwen/Qwen2.5-7B-Instruct" # the upstream's model id; empty = the first its /models lists
    api_key_file = "~/.config/trayllm/server.key"
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trayllm.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENGINE_KEYS = ("name", "url", "local", "model", "api_key_file")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # it ends alert keys (engine.unreachable.<name>)


@dataclass(frozen=True)
class EngineSpec:
    """One ``[[engines]]`` table: the local engine (``url`` empty) or a remote one."""

    name: str
    url: str = ""
    model: str = ""
    api_key_file: str = ""

    @property
    def local(self) -> bool:
        return not self.url


def parse_engines(raw: Any, source: str) -> tuple[EngineSpec, ...]:
    """The ``engines`` value of a parsed config file as EngineSpecs; ConfigError naming the table and the fix."""
    if not isinstance(raw, list) or not all(isinstance(table, dict) for table in raw):
        raise ConfigError(f"{source}: engines must be [[engines]] tables (docs/CONFIG.md, 'Several engines')")
    specs: list[EngineSpec] = []
    for number, table in enumerate(raw, start=1):
        where = f"{source}: [[engines]] table {number}"
        unknown = sorted(set(table) - set(ENGINE_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (an engine takes {', '.join(ENGINE_KEYS)})")
        for key in ("name", "url", "model", "api_key_file"):
            if not isinstance(table.get(key, ""), str):
                raise ConfigError(f"{where}: {key} must be a string")
        if not isinstance(table.get("local", False), bool):
            raise ConfigError(f"{where}: local must be true or false")
        name, url, local = table.get("name", ""), table.get("url", ""), table.get("local", False)
        if not name:
            raise ConfigError(f'{where}: give it a name (name = "desk")')
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{where}: name {name!r} must be letters, digits, '.', '_' or '-' (at most 63)")
        if url and local:
            raise ConfigError(f"{where} ({name}): set url (a remote engine) or local = true, not both")
        if not url and not local:
            raise ConfigError(f"{where} ({name}): set url (an OpenAI-compatible base URL) or local = true")
        if local and table.get("api_key_file"):
            raise ConfigError(f"{where} ({name}): api_key_file is for a remote engine (one with a url)")
        if any(spec.name == name for spec in specs):
            raise ConfigError(f"{where}: the name {name!r} is taken by an earlier table; give each engine its own")
        if local and any(spec.local for spec in specs):
            raise ConfigError(f"{where} ({name}): a second local engine; one daemon hosts at most one model itself")
        specs.append(EngineSpec(name, url, table.get("model", ""), table.get("api_key_file", "")))
    return tuple(specs)


def load_engines(path: Path) -> tuple[EngineSpec, ...]:
    """The ``[[engines]]`` of the config file at ``path``; none when it is absent (the single-engine settings)."""
    if not path.is_file():
        return ()
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix or remove the file") from None
    return parse_engines(table["engines"], str(path)) if "engines" in table else ()
