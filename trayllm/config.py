"""Settings: one table of every option, read from defaults, a TOML file and TRAYLLM_* variables.

This is the only module that reads ``TRAYLLM_*`` or the XDG variables, so a test (or a
second daemon) relocates every path by setting a handful of environment variables.
Precedence, lowest first: built-in default, config file, environment, explicit overrides
(command-line flags).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trayllm.config_checks import problems, refuse_shared_secrets
from trayllm.config_engines import parse_engines
from trayllm.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_PREFIX = "TRAYLLM_"


# group key -> (title, the doc that explains the group, if any); the order of the fields decides the order of
# the groups in `trayllm config edit`'s starter file and in docs/CONFIG.md
SETTING_GROUPS: dict[str, tuple[str, str]] = {
    "model": ("Model", ""),
    "sockets": ("Sockets", ""),
    "scheduler": ("Scheduler", ""),
    "generation": ("Generation defaults", ""),
    "places": ("Places and logging", ""),
    "records": ("Request records", "RECORDS.md"),
    "slo": ("Service-level objectives and alerts", "SLO.md"),
    "elastic": ("Elastic stack", "ELASTIC.md"),
    "testing": ("Testing", ""),
}


def _setting(default: Any, help: str, group: str) -> Any:
    """A Settings field with the help text and group that `config show`, `config edit` and docs/CONFIG.md print."""
    return field(default=default, metadata={"help": help, "group": group})


@dataclass(frozen=True)
class Settings:
    """Every trayllm setting. Each field is also file key ``name`` and env var ``TRAYLLM_NAME``."""

    model: str = _setting(
        "",
        "Model to serve: a local Hugging Face directory or .gguf file, or a hub id (org/name, org/name@revision, "
        "org/name:FILE.gguf) read from the Hugging Face cache, where `trayllm pull ID` puts it (docs/MODELS.md); "
        "empty = embedded SmolLM2-135M-Instruct.",
        group="model",
    )
    model_name: str = _setting(
        "", "Name clients use in the 'model' field; empty = derived from the model.", group="model"
    )
    api_pull: bool = _setting(
        True,
        "Answer Ollama's POST /api/pull: the daemon downloads a Hugging Face model into the cache as `trayllm pull` "
        "does (one pull at a time; it does not switch to it: `trayllm use` does). false = refused, naming this.",
        group="model",
    )
    device: str = _setting(
        "auto",
        "auto (CUDA when present: the whole model on the GPU with the most free memory "
        "that holds it, split over all GPUs only when none does), cpu, cuda or cuda:N.",
        group="model",
    )
    dtype: str = _setting(
        "auto",
        "auto (bf16 on GPUs with bf16 tensor cores, compute capability 8.0 and up; fp16 on older "
        "ones; on CPU bf16 where the CPU has it natively (AVX512-BF16 or AMX): measured faster there, see "
        "docs/BENCHMARKS.md; else fp32), float32, bfloat16 or float16.",
        group="model",
    )
    quantization: str = _setting(
        "auto",
        "auto (int8-decode on the CPU where it fits in memory, none on GPUs), none, int8-decode (CPU only: int8 "
        "copies of the linear layers, used for passes of up to 4 rows (decode steps of a few streams), the "
        "float weights for the rest; half the float weights' memory again), int8 (CPU only: int8 weights alone; "
        "fast for one stream, slow for several or for long prompts), 4bit (bitsandbytes nf4) or 8bit "
        "(bitsandbytes int8); 4bit and 8bit CUDA only. Any int8 may change a greedy reply with the batch.",
        group="model",
    )
    model_impl: str = _setting(
        "auto",
        "Which code runs the model: auto (trayllm's own Llama implementation on the CPU where the model is a "
        "plain Llama, for a start without transformers' imports and less Python per token; transformers "
        "otherwise), native (that one, or an error naming why not) or transformers.",
        group="model",
    )
    warmup: bool = _setting(True, "Run one short generation before /readyz turns true.", group="model")
    engine_url: str = _setting(
        "",
        "Serve through this OpenAI-compatible server instead of a local model (its base URL, such as "
        "http://127.0.0.1:8000/v1: vLLM, TGI, SGLang, llama.cpp, Ollama, another trayllm); empty = the local model.",
        group="model",
    )
    engine_model: str = _setting(
        "", "The model id to ask engine_url for; empty = the first one its /models lists.", group="model"
    )
    engine_api_key_file: str = _setting(
        "", "File holding the bearer token engine_url wants (one line); empty = send none.", group="model"
    )

    socket: str = _setting("", "Unix socket path; empty = $XDG_RUNTIME_DIR/trayllm/daemon.sock.", group="sockets")
    listen: str = _setting(
        "", "Also serve TCP on this 127.0.0.1:PORT (bearer token required); empty = off.", group="sockets"
    )
    token_file: str = _setting(
        "", "Bearer token for TCP clients; empty = $XDG_CONFIG_HOME/trayllm/token (created 0600).", group="sockets"
    )
    max_body_bytes: int = _setting(
        8_388_608, "Largest request body (8 MiB); a bigger one gets 413 before the rest of it is read.", group="sockets"
    )
    max_json_depth: int = _setting(
        64, "Deepest nesting of arrays and objects in a JSON body (at most 500); deeper gets 400.", group="sockets"
    )
    header_timeout_s: float = _setting(
        10.0,
        "A request line and headers must be complete this long after the connection opened (on "
        "a kept-alive connection: after their first byte), or the connection is closed.",
        group="sockets",
    )
    keep_alive_timeout_s: float = _setting(
        5.0, "A connection idle between requests this long is closed.", group="sockets"
    )
    max_tcp_connections: int = _setting(
        256,
        "Open TCP connections at most; more are closed at once, so a flood of them never starves the Unix socket.",
        group="sockets",
    )

    queue_size: int = _setting(
        100, "Requests that may wait for a batch slot; beyond that, 503 with Retry-After.", group="scheduler"
    )
    max_batch: int = _setting(8, "Requests decoded together in one batch.", group="scheduler")
    rate_limit_per_minute: float = _setting(
        120.0, "Per-user token-bucket refill rate (requests/minute); 0 = no limit.", group="scheduler"
    )
    rate_limit_burst: int = _setting(
        30, "Per-user token-bucket size (requests that may arrive at once).", group="scheduler"
    )
    backlog_threshold: int = _setting(
        8, "Waiting requests above which new requests get backlog_max_tokens.", group="scheduler"
    )
    backlog_max_tokens: int = _setting(128, "max_tokens cap for requests admitted under backlog.", group="scheduler")
    request_timeout_s: float = _setting(
        300.0, "A request still unfinished this long after arrival fails with a timeout.", group="scheduler"
    )
    shutdown_grace_s: float = _setting(
        10.0, "On SIGTERM, how long in-flight requests may finish before they are cancelled.", group="scheduler"
    )

    default_max_tokens: int = _setting(512, "max_tokens when a request gives none.", group="generation")
    temperature: float = _setting(0.2, "Default sampling temperature (0 = greedy).", group="generation")
    top_p: float = _setting(0.9, "Default nucleus-sampling mass.", group="generation")
    repetition_penalty: float = _setting(
        1.1,
        "Default penalty on tokens already in the context (1 = off); keeps a small model from looping.",
        group="generation",
    )
    history_turns: int = _setting(
        5,
        "Conversation turns (a user message and its replies) kept, newest first, if they fit the context.",
        group="generation",
    )

    cache_dir: str = _setting("", "Converted weights and hashes; empty = $XDG_CACHE_HOME/trayllm.", group="places")
    state_dir: str = _setting("", "Logs and records; empty = $XDG_STATE_HOME/trayllm.", group="places")
    data_dir: str = _setting(
        "", "Chat window conversations (conversations.db); empty = $XDG_DATA_HOME/trayllm.", group="places"
    )
    log_level: str = _setting("info", "Daemon log level: debug, info, warning, error.", group="places")

    telemetry: bool = _setting(
        True,
        "Write one record per request and count it in /metrics (off only to measure what telemetry costs).",
        group="records",
    )
    log_content: bool = _setting(
        False,
        "Also record prompt and reply text in each request record; off by default, "
        "so text stays out of logs and Elasticsearch.",
        group="records",
    )
    records_max_bytes: int = _setting(50_000_000, "Rotate the request-record file at this size.", group="records")
    records_backups: int = _setting(5, "Rotated request-record files kept (requests.jsonl.1 ... .N).", group="records")

    slo_ttft_p99_s: float = _setting(3.0, "Objective: first-token latency P99 at most this many seconds.", group="slo")
    slo_ttft_window_s: float = _setting(3600.0, "Rolling window of the first-token latency objective.", group="slo")
    slo_min_samples: int = _setting(
        100,
        "Requests a latency or error-rate window needs before it is judged (a P99 of fewer is just the slowest one).",
        group="slo",
    )
    vram_limit: float = _setting(
        0.8,
        "Objective: peak VRAM below this share of the device; also the admission limit (a "
        "request whose KV cache would pass it waits).",
        group="slo",
    )
    slo_vram_window_s: float = _setting(300.0, "Rolling window of the peak-VRAM objective.", group="slo")
    slo_error_rate: float = _setting(
        0.001, "Objective: server-side error rate at most this share (error budget).", group="slo"
    )
    slo_error_window_days: float = _setting(
        30.0, "Error-budget period; the burn-rate alert windows scale with it (1 h/5 min at 30 days).", group="slo"
    )
    slo_eval_interval_s: float = _setting(1.0, "How often the daemon re-judges its objectives.", group="slo")
    alert_margin: float = _setting(
        0.1, "Hysteresis: a firing alert resolves only below threshold x (1 - margin).", group="slo"
    )
    alert_hold_s: float = _setting(0.0, "...and only after staying below that mark this long.", group="slo")
    oom_quiet_s: float = _setting(300.0, "An OOM alert resolves after this long without another OOM.", group="slo")
    oom_retry: bool = _setting(
        False,
        "Retry a request once, alone and with half its max_tokens, when the GPU ran out of "
        "memory before it produced a token.",
        group="slo",
    )
    events_buffer: int = _setting(
        1000, "Recent /v1/events kept for clients reconnecting with Last-Event-ID.", group="slo"
    )

    es_url: str = _setting(
        "", "Elasticsearch URL to ship records to (the daemon ships when set); empty = off.", group="elastic"
    )
    es_api_key: str = _setting("", "Elasticsearch API key (base64 'id:key' as Kibana shows it).", group="elastic")
    es_username: str = _setting("", "Elasticsearch user, when not using an API key.", group="elastic")
    es_password: str = _setting("", "That user's password.", group="elastic")
    es_ca_file: str = _setting("", "CA certificate file for an https Elasticsearch or Kibana.", group="elastic")
    kibana_url: str = _setting(
        "", "Kibana URL, for `trayllm elastic dashboards` and the tray's Open dashboards.", group="elastic"
    )
    ship_batch: int = _setting(1000, "Records per bulk request when shipping.", group="elastic")
    es_bulk_max_bytes: int = _setting(
        5_000_000,
        "Most bytes in one bulk request body when shipping (Elasticsearch refuses bodies over its "
        "http.max_content_length, 100mb by default); a record larger than this on its own is dead-lettered.",
        group="elastic",
    )

    fault_injection: bool = _setting(
        False,
        "Testing only: enable PUT /v1/faults, which makes the engine raise a real CUDA OOM or sleep at a chosen point.",
        group="testing",
    )

    # -- derived paths (docs/CONFIG.md lists them with their docstrings) ------------

    @property
    def socket_path(self) -> Path:
        """The daemon's Unix socket, where every client finds it."""
        return Path(self.socket) if self.socket else runtime_dir() / "daemon.sock"

    @property
    def lock_path(self) -> Path:
        """Held by the running daemon, so a second one on the same socket refuses to start."""
        return self.socket_path.with_name(self.socket_path.name + ".lock")

    @property
    def token_path(self) -> Path:
        """The bearer token TCP clients send (created 0600 on first use)."""
        return Path(self.token_file) if self.token_file else config_dir() / "token"

    @property
    def cache_path(self) -> Path:
        """Converted weights and their content hashes, kept across runs."""
        return Path(self.cache_dir) if self.cache_dir else _xdg("XDG_CACHE_HOME", ".cache") / "trayllm"

    @property
    def records_path(self) -> Path:
        """One JSON line per request (docs/RECORDS.md), rotated at records_max_bytes."""
        return self.state_path / "requests.jsonl"

    @property
    def shipping_path(self) -> Path:
        """The shipper's checkpoint, lock and dead-letter file."""
        return self.state_path / "shipping"

    @property
    def alerts_path(self) -> Path:
        """One JSON line per alert that fires or resolves."""
        return self.state_path / "alerts.jsonl"

    @property
    def state_path(self) -> Path:
        """The daemon's log (daemon.log), request records, alert history and shipping state."""
        return Path(self.state_dir) if self.state_dir else _xdg("XDG_STATE_HOME", ".local/state") / "trayllm"

    @property
    def data_path(self) -> Path:
        """The chat window's conversations (conversations.db)."""
        return Path(self.data_dir) if self.data_dir else xdg_data_home() / "trayllm"


SETTING_FIELDS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(Settings)
_BY_NAME = {f.name: f for f in SETTING_FIELDS}


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def runtime_dir() -> Path:
    """Per-user runtime dir: $XDG_RUNTIME_DIR/trayllm, else /tmp/trayllm-<uid>.

    Another user can make the /tmp name first; whoever uses the dir checks it with trust.private_dir
    (the daemon, the pid files) or checks who serves the socket inside (the client) before relying on it.
    """
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "trayllm"
    return Path("/tmp") / f"trayllm-{os.getuid()}"


def xdg_config_home() -> Path:
    """$XDG_CONFIG_HOME (default ~/.config): trayllm's settings, and the user's systemd units and autostart entries."""
    return _xdg("XDG_CONFIG_HOME", ".config")


def xdg_data_home() -> Path:
    """$XDG_DATA_HOME (default ~/.local/share): trayllm's data, and the user's launcher entries and icons."""
    return _xdg("XDG_DATA_HOME", ".local/share")


def config_dir() -> Path:
    return xdg_config_home() / "trayllm"


def config_file() -> Path:
    override = os.environ.get(ENV_PREFIX + "CONFIG")
    return Path(override) if override else config_dir() / "config.toml"


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _coerce(name: str, raw: Any, source: str) -> Any:
    """Turn a file or env value into the field's type, or raise ConfigError naming the source."""
    kind: type = type(_BY_NAME[name].default)
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
    """Build Settings from defaults, the config file, TRAYLLM_* variables and ``overrides``; a bad value raises
    ConfigError naming where it came from (file and line, variable or flag)."""
    env = os.environ if environ is None else environ
    path = config_file()
    values = parse_config(path.read_bytes(), str(path)) if path.is_file() else {}
    if values:
        refuse_shared_secrets(path, values)
    sources = dict.fromkeys(values, str(path))
    for name in _BY_NAME:
        raw = env.get(env_name(name))
        if raw is not None:
            sources[name] = env_name(name)
            values[name] = _coerce(name, raw, sources[name])
    for name, raw in (overrides or {}).items():
        if raw is None:
            continue
        if name not in _BY_NAME:
            raise ConfigError(f"unknown setting {name!r}")
        sources[name] = f"--{name.replace('_', '-')}"
        values[name] = _coerce(name, raw, sources[name])
    settings = Settings(**values)
    _validate(settings, sources)
    return settings


def parse_config(data: bytes, source: str) -> dict[str, Any]:
    """The settings a config file sets, each coerced to its type and checked as load_settings checks it.

    Messages start with ``source`` and the line of the offending key (``path:12: ...``, a place editors jump to).
    `trayllm config edit` runs an edited copy through this before it replaces the file, so a saved file loads.
    """
    try:
        text = data.decode("utf-8")
        table = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc}); fix or remove the file") from None
    where = {key: _key_location(text, key, source) for key in table}
    if "engines" in table:  # [[engines]] tables are not settings: checked here, read by config_engines
        parse_engines(table.pop("engines"), where["engines"])
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in _BY_NAME:
            close = difflib.get_close_matches(key.replace("-", "_"), _BY_NAME, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{where[key]}: unknown setting {key!r} ({hint}`trayllm config show` lists them all)")
        values[key] = _coerce(key, raw, where[key])
    _validate(Settings(**values), where)
    return values


def _key_location(text: str, key: str, source: str) -> str:
    """``source:LINE`` of the line that sets top-level ``key`` (or opens a ``[key]`` table); just ``source`` when
    the key is spelled in a way this does not recognise (escapes in a quoted key)."""
    name = re.escape(key)
    pattern = re.compile(rf"""\s*\[*\s*(?:{name}|"{name}"|'{name}')\s*[=.\]]""")
    for number, line in enumerate(text.split("\n"), start=1):
        if pattern.match(line):
            return f"{source}:{number}"
    return source


def _validate(settings: Settings, sources: Mapping[str, str]) -> None:
    """Raise ConfigError for the first setting out of range, prefixed with where its value came from."""
    for name, problem in problems(settings):
        raise ConfigError(f"{sources[name]}: {problem}" if name in sources else problem)
