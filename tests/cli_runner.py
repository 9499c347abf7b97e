"""Run the CLI through click's runner, stdout and stderr apart: tests/cli/ call it, against the fake daemon or none."""

from __future__ import annotations

from click.testing import CliRunner, Result
from fake_daemon import FakeDaemon

from trayllm.cli import cli


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def on(fake: FakeDaemon, *args: str, input: str | None = None) -> Result:
    """``run`` against ``fake``'s socket."""
    return run("--socket", str(fake.socket_path), *args, input=input)
