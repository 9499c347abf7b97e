"""The Elasticsearch options of `trayllm ship`, `slo --from-elastic`, `bench --shipping` and `elastic ...`.

No secret is taken as a flag's value: every user on the machine can read a process's arguments (``ps``,
``/proc/PID/cmdline``), and shells keep them in their history. ``--api-key`` and ``--password`` given alone
prompt for the secret without echoing it; ``--api-key-file`` and ``--password-file`` read it from a file;
``TRAYLLM_ES_API_KEY`` and ``TRAYLLM_ES_PASSWORD`` (or the config file, which must be private) carry it too.
Given a value anyway (``--password hunter2``) they stop with one line naming those ways, before anything is
sent anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from trayllm.config import Settings, env_name, load_settings
from trayllm.errors import ConfigError

PROMPT = "\0prompt"  # what click hands over for --api-key or --password given without a value


def _no_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a secret written on the command line (the option's own name says which)."""
    if value is None or value == PROMPT:
        return value
    flag = param.opts[0]
    setting = "es_api_key" if flag == "--api-key" else "es_password"
    raise ConfigError(
        f"{flag} takes no value: other users can read a command's arguments (ps); give {flag} alone "
        f"to be prompted, {flag}-file PATH, or {env_name(setting)}"
    )


def elastic_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--es-url and the credentials, shared by every command that talks to Elasticsearch."""
    secret_file = click.Path(exists=True, dir_okay=False, path_type=Path)
    for option in reversed(
        [
            click.option("--es-url", metavar="URL", help="Elasticsearch URL (default: the es_url setting)."),
            click.option(
                "--api-key",
                is_flag=False,
                flag_value=PROMPT,
                metavar="",
                callback=_no_value,
                help="Ask for the Elasticsearch API key (default: es_api_key, TRAYLLM_ES_API_KEY).",
            ),
            click.option("--api-key-file", type=secret_file, metavar="PATH", help="Read the API key from this file."),
            click.option("--user", "username", help="Elasticsearch user (default: es_username)."),
            click.option(
                "--password",
                is_flag=False,
                flag_value=PROMPT,
                metavar="",
                callback=_no_value,
                help="Ask for that user's password (default: es_password, TRAYLLM_ES_PASSWORD; asked for "
                "anyway when a user has none).",
            ),
            click.option("--password-file", type=secret_file, metavar="PATH", help="Read the password from this file."),
            click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="CA certificate for https."),
        ]
    ):
        func = option(func)
    return func


def _read_secret(path: Path | None) -> str | None:
    """The first line of ``path`` (a file such as ``printf %s "$KEY" > key`` or a secrets mount writes)."""
    if path is None:
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0]:
        raise ConfigError(f"{path} is empty: it should hold the secret on its first line")
    return lines[0]


def _ask(what: str) -> str:
    return click.prompt(what, hide_input=True, err=True)


def elastic_settings(
    overrides: Mapping[str, Any],
    es_url: str | None,
    api_key: str | None,
    api_key_file: Path | None,
    username: str | None,
    password: str | None,
    password_file: Path | None,
    ca_file: str | None,
) -> Settings:
    """Settings with the options of ``elastic_options`` applied over ``overrides`` (the global flags): secrets
    from their files, or asked for at the prompt."""
    for flag, asked, path in (("--api-key", api_key, api_key_file), ("--password", password, password_file)):
        if asked is not None and path is not None:
            raise ConfigError(f"choose one of {flag} and {flag}-file")
    chosen = {
        **overrides,
        "es_url": es_url,
        "es_username": username,
        "es_ca_file": ca_file,
        "es_api_key": _read_secret(api_key_file),
        "es_password": _read_secret(password_file),
    }
    settings = load_settings(chosen)
    if api_key == PROMPT:
        chosen["es_api_key"] = _ask("Elasticsearch API key")
    if password == PROMPT or (settings.es_username and not settings.es_password):
        if not settings.es_username:
            raise ConfigError("--password needs a user: give --user NAME or set es_username")
        chosen["es_password"] = _ask(f"password for {settings.es_username}")
    return load_settings(chosen)
