"""The `trayllm` command line: the click group (``app``) and one module per family of commands.

Each command parses its options, calls the code that does the work and prints the result (text built in
``render``). A new command goes into the module of its family, under ``@cli.command()``, and into
``app.COMMAND_MODULES`` (`trayllm NAME` imports only NAME's module); a new family is a new module here. Then
``scripts/build_cli_doc.py`` regenerates docs/CLI.md from the commands' help (tests/cli/test_cli_doc.py fails until
it has).
"""

from trayllm.cli.app import cli, main

__all__ = ["cli", "main"]
