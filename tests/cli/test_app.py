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


def test_every_command_is_mapped_to_the_module_that_adds_it():
    """`trayllm NAME` imports only COMMAND_MODULES[NAME]: a command missing there works but imports everything."""
    import click

    from trayllm.cli import app

    app.load_every_command()
    ctx = click.Context(app.cli)
    where = {name: app.cli.get_command(ctx, name).callback.__module__ for name in app.cli.list_commands(ctx)}  # type: ignore[union-attr]
    assert where == {name: f"trayllm.cli.{module}" for name, module in app.COMMAND_MODULES.items()}


def test_a_command_imports_its_own_module_and_no_other_family():
    """(importlib's imports are missing from ``-X importtime``'s trace, so the child reports sys.modules itself.)"""
    child = (
        "import sys\n"
        "from trayllm.cli import main\n"
        "try:\n    main(['daemon', '--help'])\n"
        "except SystemExit:\n    print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
    imported = set(run.stderr.split())
    assert "trayllm.cli.daemon" in imported and "Run the daemon in the foreground" in run.stdout
    assert imported.isdisjoint({"trayllm.cli.bench", "trayllm.cli.elastic", "trayllm.cli.observe", "trayllm.cli.setup"})
