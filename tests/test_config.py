"""Settings precedence (defaults < file < env < overrides), coercion and the errors that name their source."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

from trayllm import config, config_text
from trayllm.config import tomllib
from trayllm.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "trayllm.toml"
    monkeypatch.setenv("TRAYLLM_CONFIG", str(path))
    return path


def test_defaults_and_xdg_paths(monkeypatch: pytest.MonkeyPatch):
    xdg = {var: Path(os.environ[var]) for var in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")}
    settings = config.load_settings()
    assert settings.max_batch == config.Settings.max_batch == 8
    assert settings.quantization == "auto"
    assert settings.socket_path == config.runtime_dir() / "daemon.sock"
    assert settings.lock_path.name == "daemon.sock.lock"
    assert settings.token_path == xdg["XDG_CONFIG_HOME"] / "trayllm" / "token"
    assert settings.cache_path == xdg["XDG_CACHE_HOME"] / "trayllm"
    assert settings.state_path == xdg["XDG_STATE_HOME"] / "trayllm"
    assert config.config_file() == xdg["XDG_CONFIG_HOME"] / "trayllm" / "config.toml"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert config.runtime_dir().parent == Path("/tmp")


def test_precedence_default_file_env_override(config_file: Path, monkeypatch: pytest.MonkeyPatch):
    config_file.write_text('max_batch = 4\ntemperature = 0.5\nmodel = "/models/a.gguf"\nwarmup = false\n')
    from_file = config.load_settings()
    assert (from_file.max_batch, from_file.temperature, from_file.model, from_file.warmup) == (
        4,
        0.5,
        "/models/a.gguf",
        False,
    )
    assert from_file.queue_size == 100  # untouched: the default

    monkeypatch.setenv("TRAYLLM_MAX_BATCH", "6")
    monkeypatch.setenv("TRAYLLM_WARMUP", "on")
    from_env = config.load_settings()
    assert (from_env.max_batch, from_env.warmup, from_env.temperature) == (6, True, 0.5)

    overridden = config.load_settings({"max_batch": 7, "temperature": None})  # None = flag not given
    assert (overridden.max_batch, overridden.temperature) == (7, 0.5)


def test_explicit_environ_replaces_os_environ(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRAYLLM_MAX_BATCH", "6")
    assert config.load_settings(environ={"TRAYLLM_MAX_BATCH": "3"}).max_batch == 3
    assert config.load_settings(environ={}).max_batch == 8


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRAYLLM_MAX_BATCH", "lots")
    with pytest.raises(ConfigError, match=r"^TRAYLLM_MAX_BATCH: max_batch must be a int, got 'lots'$"):
        config.load_settings()


def test_bad_bool_and_fractional_int(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRAYLLM_WARMUP", "maybe")
    with pytest.raises(ConfigError, match="TRAYLLM_WARMUP"):
        config.load_settings()
    with pytest.raises(ConfigError, match="--queue-size"):
        config.load_settings({"queue_size": 2.5}, environ={})


def test_bad_file_value_names_the_file(config_file: Path):
    config_file.write_text('queue_size = "many"\n')
    with pytest.raises(ConfigError) as info:
        config.load_settings()
    assert info.value.message == f"{config_file}:1: queue_size must be a int, got 'many'"


def test_unknown_file_key_is_refused(config_file: Path):
    config_file.write_text("max_batchh = 4\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'max_batchh'") as info:
        config.load_settings()
    assert str(config_file) in info.value.message


def test_invalid_toml_is_refused(config_file: Path):
    config_file.write_text("max_batch = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load_settings()


def test_unknown_override_is_refused():
    with pytest.raises(ConfigError, match="unknown setting 'nope'"):
        config.load_settings({"nope": 1})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"quantization": "3bit"}, "quantization must be"),
        ({"dtype": "float8"}, "dtype must be"),
        ({"max_batch": 0}, "max_batch must be at least 1"),
        ({"listen": "0.0.0.0:8080"}, "loopback only"),
        ({"listen": "127.0.0.1:http"}, "loopback only"),
        ({"vram_limit": 1.5}, "vram_limit is a share"),
        ({"slo_error_rate": 0}, "slo_error_rate is a share"),
        ({"slo_ttft_p99_s": 0}, "slo_ttft_p99_s must be positive"),
        ({"slo_min_samples": 0}, "slo_min_samples must be at least 1"),
        ({"alert_margin": 1}, "alert_margin"),
    ],
)
def test_invalid_values_are_refused(overrides: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        config.load_settings(overrides)


def test_explicit_paths_win_over_xdg(tmp_path: Path):
    settings = config.load_settings({"socket": str(tmp_path / "s.sock"), "state_dir": str(tmp_path / "st")})
    assert settings.socket_path == tmp_path / "s.sock"
    assert settings.state_path == tmp_path / "st"


def test_describe_settings_covers_every_field(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRAYLLM_DEVICE", "cpu")
    rows = config_text.describe_settings(config.load_settings())
    assert [r["name"] for r in rows] == [f.name for f in config.SETTING_FIELDS]
    device = next(r for r in rows if r["name"] == "device")
    assert device == {
        "name": "device",
        "env": "TRAYLLM_DEVICE",
        "value": "cpu",
        "default": "auto",
        "help": device["help"],
    }
    assert all(r["help"] for r in rows)


def test_file_errors_name_the_line_of_the_key(config_file: Path):
    config_file.write_text('# comment\nmodel = "/m.gguf"\n\nmax-batch = 4\n')
    with pytest.raises(ConfigError) as info:
        config.load_settings()
    assert info.value.message == (
        f"{config_file}:4: unknown setting 'max-batch' (did you mean 'max_batch'? `trayllm config show` lists them all)"
    )
    config_file.write_text('model = "/m.gguf"\n[scheduler]\nmax_batch = 4\n')
    with pytest.raises(ConfigError, match=rf"^{config_file}:2: unknown setting 'scheduler' \(`trayllm"):
        config.load_settings()


def test_range_errors_name_where_the_value_came_from(config_file: Path, monkeypatch: pytest.MonkeyPatch):
    config_file.write_text("max_batch = 4\n  vram_limit = 1.5\n")
    with pytest.raises(ConfigError) as info:
        config.load_settings()
    assert info.value.message == f"{config_file}:2: vram_limit is a share: it must be within (0, 1], got 1.5"
    config_file.write_text("max_batch = 4\n")
    monkeypatch.setenv("TRAYLLM_OOM_QUIET_S", "-1")
    with pytest.raises(ConfigError, match=r"^TRAYLLM_OOM_QUIET_S: oom_quiet_s must not be negative, got -1.0$"):
        config.load_settings()
    with pytest.raises(ConfigError, match=r"^--max-batch: max_batch must be at least 1, got 0$"):
        config.load_settings({"max_batch": 0}, environ={})


def test_a_file_value_is_checked_even_where_a_variable_overrides_it(config_file: Path, monkeypatch: pytest.MonkeyPatch):
    """A file `trayllm config edit` would refuse does not load either: the file's checks do not depend on the
    environment it happens to be read in."""
    config_file.write_text("max_batch = 0\n")
    monkeypatch.setenv("TRAYLLM_MAX_BATCH", "4")
    with pytest.raises(ConfigError, match=rf"^{config_file}:1: max_batch must be at least 1"):
        config.load_settings()


def test_parse_config_returns_what_the_file_sets():
    assert config.parse_config(b"max_batch = 4.0\nwarmup = false\n", "f") == {"max_batch": 4, "warmup": False}
    assert config.parse_config(b"", "f") == {}
    with pytest.raises(ConfigError, match=r"^f: not valid TOML \(.*line 2.*\); fix or remove the file$"):
        config.parse_config(b"max_batch = 4\nmax_batch = 5\n", "f")
    with pytest.raises(ConfigError, match="^f: not valid TOML"):
        config.parse_config(b"model = '\xff'\n", "f")


def test_settings_groups_are_known_and_each_in_one_run():
    groups = [f.metadata["group"] for f in config.SETTING_FIELDS]
    runs = [title for title, _, _ in config_text.grouped_settings()]
    assert len(runs) == len(set(runs)) == len(config.SETTING_GROUPS)  # no group split, none unused
    assert set(groups) == set(config.SETTING_GROUPS)


def test_starter_config_has_every_setting_commented_out_at_its_default():
    starter = config_text.starter_config()
    assert tomllib.loads(starter) == {}  # all comments: the starter file alone changes nothing
    assert "defaults < this file < TRAYLLM_* environment\n# variables < command-line flags" in starter
    for f in config.SETTING_FIELDS:
        assert f"\n# {f.name} = {config_text.toml_value(f.default)}\n" in starter
        assert f"[{config.env_name(f.name)}]" in starter
    assert all(len(line) <= 100 for line in starter.splitlines())
    uncommented = re.sub(r"^# (\w+ = )", r"\1", starter, flags=re.MULTILINE)
    defaults = {f.name: f.default for f in config.SETTING_FIELDS}
    assert config.parse_config(uncommented.encode(), "starter") == defaults  # every value is TOML of its type


def test_config_doc_is_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("build_config_doc", ROOT / "scripts" / "build_config_doc.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    doc = (ROOT / "docs" / "CONFIG.md").read_text(encoding="utf-8")
    assert doc == generator.render(), "docs/CONFIG.md is stale: run .venv/bin/python scripts/build_config_doc.py"
    for f in config.SETTING_FIELDS:
        assert f"| `{f.name}` | `{config.env_name(f.name)}` | `{config_text.toml_value(f.default)}` |" in doc
    assert "| `state_path` | `$XDG_STATE_HOME/trayllm` | `$HOME/.local/state/trayllm` | `state_dir` |" in doc


@pytest.mark.parametrize(
    "secret",
    ['es_password = "hunter2"', 'es_api_key = "aWQ6a2V5"', 'es_url = "https://elastic:hunter2@es.example:9200"'],
)
def test_a_config_file_holding_a_secret_must_be_private(config_file: Path, secret: str):
    config_file.write_text(f"max_batch = 4\n{secret}\n")
    for mode in (0o644, 0o640, 0o604):
        config_file.chmod(mode)
        with pytest.raises(ConfigError) as info:
            config.load_settings()
        name = secret.partition(" ")[0]
        assert info.value.message == (
            f"{config_file} holds {name} but is open to other users (mode {mode:04o}); "
            f"make it yours alone: chmod 600 {config_file}"
        )
    config_file.chmod(0o600)
    assert config.load_settings().max_batch == 4


def test_a_config_file_without_secrets_may_be_shared(config_file: Path):
    config_file.write_text('max_batch = 4\nes_url = "https://es.example:9200"\nes_password = ""\n')
    config_file.chmod(0o644)
    assert config.load_settings().max_batch == 4


def test_config_show_hides_the_password_in_a_url(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRAYLLM_ES_URL", "https://elastic:hunter2@es.example:9200")
    monkeypatch.setenv("TRAYLLM_KIBANA_URL", "http://t0ken@kibana:5601")
    monkeypatch.setenv("TRAYLLM_ES_PASSWORD", "s3cret")
    rows = {r["name"]: r["value"] for r in config_text.describe_settings(config.load_settings())}
    assert rows["es_url"] == "https://elastic:***@es.example:9200"
    assert rows["kibana_url"] == "http://***@kibana:5601"
    assert rows["es_password"] == "***"
