"""Settings: one table of every option, read from defaults, a TOML file and TRAYLLM_* variables.

This is the only module that reads ``TRAYLLM_*`` or the XDG variables, so a test (or a
second daemon) relocates every path by setting a handful of environment variables.
Precedence, lowest first: built-in default, config file, environment, explicit overrides
(command-line flags).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trayllm.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_PREFIX = "TRAYLLM_"


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    """Every trayllm setting. Each field is also file key ``name`` and env var ``TRAYLLM_NAME``."""

    # model
    model: str = _setting("",
                        "Model to serve: a local Hugging Face directory or .gguf file; empty = embedded "
                        "SmolLM2-135M-Instruct.")
    model_name: str = _setting("", "Name clients use in the 'model' field; empty = derived from the model.")
    device: str = _setting("auto", "auto (CUDA when present), cpu, cuda or cuda:N.")
    dtype: str = _setting("auto",
                        "auto (bf16 where the GPU supports it, else fp16; fp32 on CPU), float32, bfloat16 or "
                        "float16.")
    quantization: str = _setting("none", "none, 4bit (bitsandbytes nf4) or 8bit (bitsandbytes int8); CUDA only.")
    warmup: bool = _setting(True, "Run one short generation before /readyz turns true.")
    # sockets
    socket: str = _setting("", "Unix socket path; empty = $XDG_RUNTIME_DIR/trayllm/daemon.sock.")
    listen: str = _setting("", "Also serve TCP on this 127.0.0.1:PORT (bearer token required); empty = off.")
    token_file: str = _setting("",
                        "Bearer token for TCP clients; empty = $XDG_CONFIG_HOME/trayllm/token (created 0600).")
    # scheduler
    queue_size: int = _setting(100, "Requests that may wait for a batch slot; beyond that, 503 with Retry-After.")
    max_batch: int = _setting(8, "Requests decoded together in one batch.")
    rate_limit_per_minute: float = _setting(120.0, "Per-user token-bucket refill rate (requests/minute); 0 = no limit.")
    rate_limit_burst: int = _setting(30, "Per-user token-bucket size (requests that may arrive at once).")
    backlog_threshold: int = _setting(8, "Waiting requests above which new requests get backlog_max_tokens.")
    backlog_max_tokens: int = _setting(128, "max_tokens cap for requests admitted under backlog.")
    request_timeout_s: float = _setting(300.0,
                        "A request still unfinished this long after arrival fails with a timeout.")
    shutdown_grace_s: float = _setting(10.0,
                        "On SIGTERM, how long in-flight requests may finish before they are cancelled.")
    # generation defaults
    default_max_tokens: int = _setting(512, "max_tokens when a request gives none.")
    temperature: float = _setting(0.2, "Default sampling temperature (0 = greedy).")
    top_p: float = _setting(0.9, "Default nucleus-sampling mass.")
    repetition_penalty: float = _setting(1.1,
                        "Default penalty on tokens already in the context (1 = off); keeps a small model from "
                        "looping.")
    history_turns: int = _setting(5,
                        "Conversation turns (a user message and its replies) kept, newest first, if they fit "
                        "the context.")
    # places
    cache_dir: str = _setting("", "Converted weights and hashes; empty = $XDG_CACHE_HOME/trayllm.")
    state_dir: str = _setting("", "Logs and records; empty = $XDG_STATE_HOME/trayllm.")
    data_dir: str = _setting("", "Chat window conversations (conversations.db); empty = $XDG_DATA_HOME/trayllm.")
    log_level: str = _setting("info", "Daemon log level: debug, info, warning, error.")
    # request records
    telemetry: bool = _setting(True, "Write one record per request and count it in /metrics (off only to measure "
                                     "what telemetry costs).")
    log_content: bool = _setting(False,
                                 "Also record prompt and reply text in each request record; off by default, "
                                 "so text stays out of logs and Elasticsearch.")
    records_max_bytes: int = _setting(50_000_000, "Rotate the request-record file at this size.")
    records_backups: int = _setting(5, "Rotated request-record files kept (requests.jsonl.1 ... .N).")
    # service-level objectives and alerts (docs/SLO.md)
    slo_ttft_p99_s: float = _setting(3.0, "Objective: first-token latency P99 at most this many seconds.")
    slo_ttft_window_s: float = _setting(3600.0, "Rolling window of the first-token latency objective.")
    slo_min_samples: int = _setting(100,
                        "Requests a latency or error-rate window needs before it is judged (a P99 of fewer is "
                        "just the slowest one).")
    vram_limit: float = _setting(0.8,
                        "Objective: peak VRAM below this share of the device; also the admission limit (a "
                        "request whose KV cache would pass it waits).")
    slo_vram_window_s: float = _setting(300.0, "Rolling window of the peak-VRAM objective.")
    slo_error_rate: float = _setting(0.001, "Objective: server-side error rate at most this share (error budget).")
    slo_error_window_days: float = _setting(30.0,
                        "Error-budget period; the burn-rate alert windows scale with it (1 h/5 min at 30 days).")
    slo_eval_interval_s: float = _setting(1.0, "How often the daemon re-judges its objectives.")
    alert_margin: float = _setting(0.1,
                        "Hysteresis: a firing alert resolves only below threshold x (1 - margin).")
    alert_hold_s: float = _setting(0.0, "...and only after staying below that mark this long.")
    oom_quiet_s: float = _setting(300.0, "An OOM alert resolves after this long without another OOM.")
    oom_retry: bool = _setting(False,
                        "Retry a request once, alone and with half its max_tokens, when the GPU ran out of "
                        "memory before it produced a token.")
    events_buffer: int = _setting(1000, "Recent /v1/events kept for clients reconnecting with Last-Event-ID.")
    # Elastic stack (docs/ELASTIC.md)
    es_url: str = _setting("", "Elasticsearch URL to ship records to (the daemon ships when set); empty = off.")
    es_api_key: str = _setting("", "Elasticsearch API key (base64 'id:key' as Kibana shows it).")
    es_username: str = _setting("", "Elasticsearch user, when not using an API key.")
    es_password: str = _setting("", "That user's password.")
    es_ca_file: str = _setting("", "CA certificate file for an https Elasticsearch or Kibana.")
    kibana_url: str = _setting("", "Kibana URL, for `trayllm elastic dashboards` and the tray's Open dashboards.")
    ship_batch: int = _setting(1000, "Records per bulk request when shipping.")
    fault_injection: bool = _setting(False,
                        "Testing only: enable PUT /v1/faults, which makes the engine raise a real CUDA OOM or "
                        "sleep at a chosen point.")

    # -- derived paths -------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        return Path(self.socket) if self.socket else runtime_dir() / "daemon.sock"

    @property
    def lock_path(self) -> Path:
        return self.socket_path.with_name(self.socket_path.name + ".lock")

    @property
    def token_path(self) -> Path:
        return Path(self.token_file) if self.token_file else config_dir() / "token"

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else _xdg("XDG_CACHE_HOME", ".cache") / "trayllm"

    @property
    def records_path(self) -> Path:
        return self.state_path / "requests.jsonl"

    @property
    def shipping_path(self) -> Path:
        """The shipper's checkpoint, lock and dead-letter file."""
        return self.state_path / "shipping"

    @property
    def alerts_path(self) -> Path:
        return self.state_path / "alerts.jsonl"

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir) if self.state_dir else _xdg("XDG_STATE_HOME", ".local/state") / "trayllm"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else _xdg("XDG_DATA_HOME", ".local/share") / "trayllm"


SETTING_FIELDS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(Settings)
_BY_NAME = {f.name: f for f in SETTING_FIELDS}


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def runtime_dir() -> Path:
    """Per-user runtime dir: $XDG_RUNTIME_DIR/trayllm, else a private dir under /tmp."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "trayllm"
    return Path("/tmp") / f"trayllm-{os.getuid()}"


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "trayllm"


def config_file() -> Path:
    override = os.environ.get(ENV_PREFIX + "CONFIG")
    return Path(override) if override else config_dir() / "config.toml"


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _coerce(name: str, raw: Any, source: str) -> Any:
    """Turn a file or env value into the field's type, or raise ConfigError naming the source."""
    kind = type(_BY_NAME[name].default)
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int and isinstance(raw, float) and not raw.is_integer():
            raise ValueError(raw)
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {name} must be a {kind.__name__}, got {raw!r}") from None


def load_settings(overrides: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from defaults, the config file, TRAYLLM_* variables and ``overrides``."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file()
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}); fix or remove the file") from None
        for key, raw in data.items():
            if key not in _BY_NAME:
                raise ConfigError(f"{path}: unknown setting {key!r} (see `trayllm config show`)")
            values[key] = _coerce(key, raw, str(path))
    for name in _BY_NAME:
        raw = env.get(env_name(name))
        if raw is not None:
            values[name] = _coerce(name, raw, env_name(name))
    for name, raw in (overrides or {}).items():
        if raw is None:
            continue
        if name not in _BY_NAME:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = _coerce(name, raw, f"--{name.replace('_', '-')}")
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    if settings.quantization not in ("none", "4bit", "8bit"):
        raise ConfigError(f"quantization must be none, 4bit or 8bit, got {settings.quantization!r}")
    if settings.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16, got {settings.dtype!r}")
    for name in ("queue_size", "max_batch", "default_max_tokens", "backlog_max_tokens", "history_turns",
                 "rate_limit_burst", "records_max_bytes", "records_backups", "slo_min_samples", "events_buffer",
                 "ship_batch"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(settings, name)}")
    for name in ("slo_ttft_p99_s", "slo_ttft_window_s", "slo_vram_window_s", "slo_error_window_days",
                 "slo_eval_interval_s"):
        if not getattr(settings, name) > 0:
            raise ConfigError(f"{name} must be positive, got {getattr(settings, name)}")
    for name in ("vram_limit", "slo_error_rate"):
        if not 0 < getattr(settings, name) <= 1:
            raise ConfigError(f"{name} is a share: it must be within (0, 1], got {getattr(settings, name)}")
    if not 0 <= settings.alert_margin < 1 or settings.alert_hold_s < 0 or settings.oom_quiet_s < 0:
        raise ConfigError("need 0 <= alert_margin < 1, alert_hold_s >= 0 and oom_quiet_s >= 0")
    if settings.listen:
        host, _, port = settings.listen.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "[::1]") or not port.isdigit():
            raise ConfigError(f"listen must be 127.0.0.1:PORT (loopback only), got {settings.listen!r}")


SECRET_SETTINGS = frozenset({"es_api_key", "es_password"})


def describe_settings(settings: Settings) -> list[dict[str, Any]]:
    """One row per setting (name, env var, value, default, help) for `trayllm config show`; secrets that are
    set show as ``***``."""
    return [
        {
            "name": f.name,
            "env": env_name(f.name),
            "value": "***" if f.name in SECRET_SETTINGS and getattr(settings, f.name) else getattr(settings, f.name),
            "default": f.default,
            "help": f.metadata["help"],
        }
        for f in SETTING_FIELDS
    ]
