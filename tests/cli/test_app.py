"""The `trayllm` group: a TrayllmError is one stderr line and status 1, click's usage errors stay click's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import run


def test_no_daemon_is_one_line_on_stderr(tmp_path: Path):
    sock = tmp_path / "none.sock"
    result = run("--socket", str(sock), "status")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"trayllm: error: no trayllm daemon on {sock}; start one with `trayllm daemon` or `trayllm up`\n"
    )


def test_bad_setting_is_one_line_on_stderr(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRAYLLM_MAX_BATCH", "abc")
    result = run("config", "show")
    assert result.exit_code == 1
    assert result.stderr == "trayllm: error: TRAYLLM_MAX_BATCH: max_batch must be a int, got 'abc'\n"


def test_usage_errors_stay_clicks():
    result = run("bench", "startup")  # (`ask` with no PROMPT reads stdin now: see tests/cli/test_chat.py)
    assert result.exit_code == 2
    assert "Usage: " in result.stderr and "Missing argument 'RUNS'" in result.stderr


def test_python_dash_m_runs_the_same_group():
    """`python -m trayllm` is how `trayllm up` starts a detached daemon: it must reach every command."""
    result = subprocess.run(
        [sys.executable, "-m", "trayllm", "bench", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: trayllm bench [OPTIONS] COMMAND [ARGS]...")
