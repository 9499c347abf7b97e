"""Settings as people read them: `config show`'s rows, values as TOML, and the starter config file's layout."""

from __future__ import annotations

import dataclasses
import itertools
import json
import textwrap
from typing import Any

from trayllm.config import SETTING_FIELDS, SETTING_GROUPS, Settings, env_name
from trayllm.config_checks import SECRET_SETTINGS
from trayllm.redact import MASK, mask_url_credentials


def describe_settings(settings: Settings) -> list[dict[str, Any]]:
    """One row per setting (name, env var, value, default, help) for `trayllm config show`; secrets that are
    set show as ``***``, and so does the password in a URL."""
    return [
        {
            "name": f.name,
            "env": env_name(f.name),
            "value": _shown_value(f.name, getattr(settings, f.name)),
            "default": f.default,
            "help": f.metadata["help"],
        }
        for f in SETTING_FIELDS
    ]


def _shown_value(name: str, value: Any) -> Any:
    """A setting's value as `config show` prints it: a secret as ``***``, a URL without its password."""
    if not isinstance(value, str) or not value:
        return value
    return MASK if name in SECRET_SETTINGS else mask_url_credentials(value)


def toml_value(value: Any) -> str:
    """A setting's value (str, int, float or bool) as TOML, for `config show` and the starter config file."""
    return str(value).lower() if isinstance(value, bool) else json.dumps(value)


def grouped_settings() -> list[tuple[str, str, list[dataclasses.Field[Any]]]]:
    """(title, doc that explains them or "", fields) per group, in field order: how the starter config file and
    docs/CONFIG.md lay the settings out."""
    return [
        (*SETTING_GROUPS[group], list(fields))
        for group, fields in itertools.groupby(SETTING_FIELDS, key=lambda f: f.metadata["group"])
    ]


def starter_config() -> str:
    """The file `trayllm config edit` opens when there is none yet: every setting commented out at its default,
    under its help text and variable, so the file documents itself and a change is one uncommented line."""
    lines = [
        "# trayllm settings. Precedence, lowest first: built-in defaults < this file < TRAYLLM_* environment",
        "# variables < command-line flags. Every setting is here, commented out at its default: uncomment",
        "# a line and change its value. `trayllm config show` prints the values in effect, docs/CONFIG.md",
        "# explains them all. es_api_key and es_password are secrets: keep this file private",
        "# (`trayllm config edit` saves it 0600); trayllm refuses one holding a secret that others can read.",
    ]
    for title, doc, fields in grouped_settings():
        lines += ["", "", f"# == {title} (docs/{doc}) ==" if doc else f"# == {title} =="]
        for f in fields:
            lines += [
                "",
                *textwrap.wrap(
                    f"{f.metadata['help']} [{env_name(f.name)}]", 100, initial_indent="# ", subsequent_indent="# "
                ),
                f"# {f.name} = {toml_value(f.default)}",
            ]
    return "\n".join(lines) + "\n"
