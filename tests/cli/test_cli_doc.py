"""docs/CLI.md is what scripts/build_cli_doc.py writes from the commands' help, and covers every command."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import click
import pytest

from trayllm.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_cli_doc", ROOT / "scripts" / "build_cli_doc.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    return generator


def _paths(group: click.Group, prefix: str = "trayllm") -> list[str]:
    """Every command path under ``group``, asking it as help does (the root group imports its modules lazily)."""
    out = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        out.append(f"{prefix} {name}")
        if isinstance(command, click.Group):
            out += _paths(command, f"{prefix} {name}")
    return out


def test_cli_doc_is_what_the_generator_writes():
    doc = (ROOT / "docs" / "CLI.md").read_text(encoding="utf-8")
    assert doc == _generator().render(), "docs/CLI.md is stale: run .venv/bin/python scripts/build_cli_doc.py"


def test_cli_doc_has_every_command_with_its_usage_and_options():
    doc = (ROOT / "docs" / "CLI.md").read_text(encoding="utf-8")
    assert "\n## trayllm bench soak\n" in doc and "  --interval SECONDS " in doc
    for path in _paths(cli):
        assert f"\n## {path}\n\n```text\nUsage: {path} " in doc, path


def test_the_doc_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch):
    generator = _generator()
    wide = generator.render()
    monkeypatch.setenv("COLUMNS", "40")
    assert generator.render() == wide
