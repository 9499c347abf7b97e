"""[[engines]] tables: parsed into EngineSpecs, a bad table refused with the fix, and `config edit`'s check runs it."""

from __future__ import annotations

import pytest

from trayllm.config import parse_config
from trayllm.config_engines import EngineSpec, parse_engines

GOOD = b"""
max_batch = 4

[[engines]]
name = "desk"
local = true

[[engines]]
name = "server"
url = "http://gpu-box:8000/v1"
model = "Qwen/Qwen2.5-7B-Instruct"
"""


def test_tables_become_specs_and_leave_the_settings_alone(tmp_path) -> None:
    import tomllib

    specs = parse_engines(tomllib.loads(GOOD.decode())["engines"], "config.toml")
    assert specs == (EngineSpec("desk"), EngineSpec("server", "http://gpu-box:8000/v1", "Qwen/Qwen2.5-7B-Instruct"))
    assert specs[0].local and not specs[1].local
    assert parse_config(GOOD, "config.toml") == {"max_batch": 4}


@pytest.mark.parametrize(
    ("tables", "fix"),
    [
        ([{"url": "http://a/v1"}], "give it a name"),
        ([{"name": "a", "local": True}, {"name": "a", "url": "http://a/v1"}], "taken by an earlier table"),
        ([{"name": "a", "local": True, "url": "http://a/v1"}], "not both"),
        ([{"name": "a", "local": True}, {"name": "b", "local": True}], "at most one model itself"),
        ([{"name": "a"}], "set url"),
        ([{"name": "a", "url": "http://a/v1", "key": "x"}], "unknown key 'key'"),
        ([{"name": "a b", "url": "http://a/v1"}], "must be letters"),
    ],
)
def test_a_bad_table_is_refused_naming_it_and_the_fix(tables: list[dict], fix: str) -> None:
    with pytest.raises(Exception, match=fix) as refused:
        parse_engines(tables, "config.toml")
    assert type(refused.value).__name__ == "ConfigError" and "config.toml: [[engines]] table" in str(refused.value)


def test_config_edit_refuses_a_bad_table_too() -> None:
    with pytest.raises(Exception, match="config.toml:2: .*give it a name"):
        parse_config(b'\n[[engines]]\nurl = "http://a/v1"\n', "config.toml")
