"""The `trayllm` click group: its global options, settings from them, and the one place errors become statuses.

Every TrayllmError ends here as one ``trayllm: error: ...`` line on stderr and exit status 1
(see ``_Cli.main``); click's own usage errors keep click's format and status 2. A command that needs an extra
the install lacks fails the same way, with the pip command that adds it (``_Command``, ``trayllm.extras``).
The command modules beside this one add their commands to ``cli`` when imported, and ``cli`` imports one only
when its command is asked for (``_LazyCli``): `trayllm daemon` must not pay for the chat, bench and Elastic code.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any

import click

from trayllm import __version__, config, errors, extras
from trayllm.terminal_text import for_terminal, one_line


class _Command(click.Command):
    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a module only an extra installs, missing here, becomes one line naming that extra."""
        with extras.require_extra(ctx.command_path):
            return super().invoke(ctx)


class _Cli(click.Group):
    command_class = _Command
    group_class = type  # sub-groups (desktop, elastic, config, bench) are _Cli too, so their commands are _Command

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """The one place a TrayllmError becomes a short message and an exit status."""
        try:
            return super().main(*args, **kwargs)
        except errors.TrayllmError as exc:
            # a RequestError carries the daemon's words, perhaps quoting a request: one line, like the others;
            # only local failures (a log tail) span lines
            shown = one_line if isinstance(exc, errors.RequestError) else for_terminal
            click.echo(f"trayllm: error: {shown(exc.message)}", err=True)
            sys.exit(1)


# command -> the module under trayllm.cli that adds it: `trayllm NAME` imports that module alone. A command missing
# here still works (every module is imported to find it); tests/cli/test_app.py fails until it is added.
COMMAND_MODULES: dict[str, str] = {
    "ask": "chat",
    "bench": "bench",
    "chat": "chat",
    "config": "setup",
    "daemon": "daemon",
    "desktop": "setup",
    "doctor": "setup",
    "down": "daemon",
    "elastic": "elastic",
    "events": "observe",
    "logs": "observe",
    "models": "models",
    "pause": "daemon",
    "pull": "pull",
    "reload": "daemon",
    "resume": "daemon",
    "ship": "elastic",
    "slo": "observe",
    "status": "observe",
    "tray": "daemon",
    "up": "daemon",
    "use": "models",
}


def load_every_command() -> None:
    """Import every module of this package, so that every command is registered (help, docs, completion)."""
    package = sys.modules[__package__]
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{module.name}")


class _LazyCli(_Cli):
    """The root group: imports a command's module when that command is looked up, every module when all are
    listed. Importing them all costs a quarter of a second, which a daemon's start or `trayllm status` should
    not pay."""

    group_class: type[click.Group] = _Cli  # type: ignore[assignment]  # its sub-groups: their modules are imported

    def list_commands(self, ctx: click.Context) -> list[str]:
        load_every_command()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            module = COMMAND_MODULES.get(cmd_name)
            if module is not None:
                importlib.import_module(f"{__package__}.{module}")
            if cmd_name not in self.commands:
                load_every_command()
        return super().get_command(ctx, cmd_name)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="trayllm")


def settings_for(ctx: click.Context, **overrides: Any) -> config.Settings:
    """The settings in effect for this command: the global flags and ``overrides`` over files and variables."""
    return config.load_settings({**ctx.obj, **overrides})


@click.group(cls=_LazyCli)
@click.option(
    "--socket", metavar="PATH", help="The daemon's Unix socket (default: $XDG_RUNTIME_DIR/trayllm/daemon.sock)."
)
@click.version_option(__version__, prog_name="trayllm")
@click.pass_context
def cli(ctx: click.Context, socket: str | None) -> None:
    """trayllm: chat with a local LLM served by one background daemon.

    \b
    trayllm up                  start the daemon if needed, then the tray and the chat window
                                (with no display: chat in the terminal)
    trayllm ask "Why is the sky blue?"
    trayllm status              what is loaded, queue, counters, SLOs, alerts
    trayllm slo                 the service-level objectives and their error budgets
    trayllm events              follow alerts and state changes as they happen
    trayllm pause | resume | reload
    trayllm models              the models here, what fits the GPU; `trayllm use ID` switches to one
    trayllm bench load          measure first-token latency and decode speed
    trayllm down                stop the tray, the chat windows and the daemon
    trayllm doctor              which GPU this is, and which model sizes it can run
    trayllm desktop install     start at login (systemd user units), menu entry and icon

    Settings come from ~/.config/trayllm/config.toml and TRAYLLM_* variables
    (`trayllm config show` lists them all).
    """
    ctx.obj = {"socket": socket}
