"""`trayllm config show` and `config path`: every setting's value as TOML or JSON, and where the file is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run


def test_config_show_and_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("TRAYLLM_MAX_BATCH", "3")
    rows = json.loads(run("config", "show", "--json").stdout)
    assert next(r for r in rows if r["name"] == "max_batch")["value"] == 3
    text = run("config", "show").stdout
    assert "max_batch = 3\n" in text and "(default 8)" in text
    assert 'model = ""\n' in text
    monkeypatch.setenv("TRAYLLM_CONFIG", str(tmp_path / "c.toml"))
    path = run("config", "path")
    assert path.stdout == f"{tmp_path / 'c.toml'}\n"
    assert "does not exist" in path.stderr
