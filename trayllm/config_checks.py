"""Checks on settings: the range each value must fall in, and no secret in a config file others can read.

load_settings and parse_config both run these, so a value `trayllm config edit` accepts is one the daemon
starts with, and a bad one is refused with the place it came from before anything uses it.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trayllm.errors import ConfigError
from trayllm.redact import has_url_credentials

if TYPE_CHECKING:
    from trayllm.config import Settings

MAX_JSON_DEPTH = 500  # Python's JSON parser recurses once per level, under the interpreter's limit of 1000 frames


def problems(settings: Settings) -> Iterator[tuple[str, str]]:
    """(setting, what is wrong) for each value outside what the daemon accepts."""
    if settings.quantization not in ("auto", "none", "int8-decode", "int8", "4bit", "8bit"):
        yield (
            "quantization",
            f"quantization must be auto, none, int8-decode, int8, 4bit or 8bit, got {settings.quantization!r}",
        )
    if settings.model_impl not in ("auto", "native", "transformers"):
        yield "model_impl", f"model_impl must be auto, native or transformers, got {settings.model_impl!r}"
    if settings.dtype not in ("auto", "float32", "bfloat16", "float16"):
        yield "dtype", f"dtype must be auto, float32, bfloat16 or float16, got {settings.dtype!r}"
    for name in (
        "queue_size",
        "max_batch",
        "default_max_tokens",
        "backlog_max_tokens",
        "history_turns",
        "rate_limit_burst",
        "records_max_bytes",
        "records_backups",
        "slo_min_samples",
        "events_buffer",
        "ship_batch",
        "es_bulk_max_bytes",
        "max_body_bytes",
        "max_json_depth",
        "max_tcp_connections",
    ):
        if getattr(settings, name) < 1:
            yield name, f"{name} must be at least 1, got {getattr(settings, name)}"
    for name in (
        "slo_ttft_p99_s",
        "slo_ttft_window_s",
        "slo_vram_window_s",
        "slo_error_window_days",
        "slo_eval_interval_s",
        "header_timeout_s",
        "keep_alive_timeout_s",
    ):
        if not getattr(settings, name) > 0:
            yield name, f"{name} must be positive, got {getattr(settings, name)}"
    if settings.max_json_depth > MAX_JSON_DEPTH:
        yield "max_json_depth", f"max_json_depth must be at most {MAX_JSON_DEPTH}, got {settings.max_json_depth}"
    for name in ("vram_limit", "slo_error_rate"):
        if not 0 < getattr(settings, name) <= 1:
            yield name, f"{name} is a share: it must be within (0, 1], got {getattr(settings, name)}"
    if not 0 <= settings.alert_margin < 1:
        yield "alert_margin", f"alert_margin must be within [0, 1), got {settings.alert_margin}"
    for name in ("alert_hold_s", "oom_quiet_s"):
        if getattr(settings, name) < 0:
            yield name, f"{name} must not be negative, got {getattr(settings, name)}"
    if settings.listen:
        host, _, port = settings.listen.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "[::1]") or not port.isdigit():
            yield "listen", f"listen must be 127.0.0.1:PORT (loopback only), got {settings.listen!r}"


SECRET_SETTINGS = frozenset({"es_api_key", "es_password"})


def refuse_shared_secrets(path: Path, values: Mapping[str, Any]) -> None:
    """Refuse a config file that holds a secret (a SECRET_SETTINGS value, or a URL with a password in it) while
    other users may read it: as ssh does with a private key, since a warning scrolls by and the secret stays
    open. `trayllm config edit` saves the file 0600."""
    secrets = [
        name
        for name, value in values.items()
        if isinstance(value, str) and value and (name in SECRET_SETTINGS or has_url_credentials(value))
    ]
    mode = stat.S_IMODE(path.stat().st_mode)
    if secrets and mode & 0o077:
        raise ConfigError(
            f"{path} holds {' and '.join(secrets)} but is open to other users (mode {mode:04o}); "
            f"make it yours alone: chmod 600 {path}"
        )
