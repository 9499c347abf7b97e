"""Commands that set this machine up: `desktop install|uninstall`, `config show|path|edit` and `doctor`."""

from __future__ import annotations

import json
import sys

import click

from trayllm import config, config_text, errors
from trayllm.cli.app import cli, settings_for
from trayllm.cli.render import format_setting


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option(
    "--context",
    type=click.IntRange(min=1),
    default=4096,
    show_default=True,
    help="Context length the fit table budgets KV cache for.",
)
@click.option(
    "--vram",
    "planned_gib",
    type=click.FloatRange(min=1),
    metavar="GIB",
    help="Plan for a GPU with this much memory (all free) instead of the GPUs here.",
)
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, context: int, planned_gib: float | None) -> None:
    """What GPU this machine has, and which model sizes it can run at fp16, 8-bit and 4-bit."""
    from trayllm.doctor.gpus import probe
    from trayllm.doctor.report import doctor_report, to_text

    report = doctor_report(probe(), context, settings_for(ctx).vram_limit, planned_gib)
    click.echo(json.dumps(report, indent=2) if as_json else to_text(report))


# -- desktop integration ------------------------------------------------------------


@cli.group("desktop")
def desktop_group() -> None:
    """Start at login and show in the menu: systemd user units, autostart and launcher entries, the icon."""


def _echo_warning(message: str) -> None:
    click.echo(f"trayllm: warning: {message}", err=True)


@desktop_group.command("install")
@click.option(
    "--no-systemd",
    is_flag=True,
    help="Write no systemd units: the autostart entry starts the tray, the daemon starts on demand.",
)
@click.option("--start", is_flag=True, help="Also start the daemon and the tray now (systemctl --user enable --now).")
def desktop_install(no_systemd: bool, start: bool) -> None:
    """Install for this user, running this Python: units, autostart and launcher entries, icons."""
    if no_systemd and start:
        raise click.UsageError("--start starts the systemd units, which --no-systemd leaves out")
    from trayllm.desktop.install import install

    install(use_systemd=not no_systemd, start=start, say=click.echo, warn=_echo_warning)


@desktop_group.command("uninstall")
def desktop_uninstall() -> None:
    """Disable and stop the units, and remove every file `trayllm desktop install` writes."""
    from trayllm.desktop.install import uninstall

    uninstall(say=click.echo, warn=_echo_warning)


# -- config -------------------------------------------------------------------------


@cli.group("config")
def config_group() -> None:
    """Show, locate and edit the settings (every one is in docs/CONFIG.md)."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="One object per setting: name, env, value, default, help.")
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Every setting's value (defaults < config file < TRAYLLM_* < flags), as TOML you can copy."""
    rows = config_text.describe_settings(settings_for(ctx))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(format_setting(row))


@config_group.command("path")
def config_path() -> None:
    """Where the config file is read from (TRAYLLM_CONFIG overrides it)."""
    path = config.config_file()
    click.echo(str(path))
    if not path.exists():
        click.echo("trayllm: (the file does not exist; defaults and TRAYLLM_* apply)", err=True)


@config_group.command("edit")
@click.pass_context
def config_edit(ctx: click.Context) -> None:
    """Edit the config file in $VISUAL or $EDITOR; it is saved only if it loads.

    Without a config file yet, the editor opens one with every setting commented out at its default.
    """
    from trayllm.config_edit import edit_config, find_editor

    path = config.config_file()
    result = edit_config(path, find_editor(), _edit_again)
    if result.outcome == "unchanged":
        click.echo(f"unchanged: {path}")
        return
    if result.outcome == "starter":
        click.echo(f"not saved: the starter file came back unchanged, so {path} still does not exist")
        return
    click.echo(f"saved {path}")
    if overriding := result.overriding_variables():
        click.echo(
            f"trayllm: note: {', '.join(overriding)}, set in this environment, still override the file", err=True
        )
    try:
        daemon_running = settings_for(ctx).socket_path.is_socket()
    except errors.ConfigError as exc:  # the file loads; a TRAYLLM_* variable or a flag does not
        click.echo(f"trayllm: note: {exc.message}", err=True)
        return
    if daemon_running:  # it read its settings when it started
        click.echo("trayllm: restart the daemon to apply (`trayllm down && trayllm up`)", err=True)


def _edit_again(error: errors.ConfigError) -> bool:
    """Offer to reopen an invalid edit, but only to someone at a terminal: a script gets exit 1 and the .rejected
    copy. Ctrl-C or end of input at the question counts as no, so the edit is still kept."""
    if not sys.stdin.isatty():
        return False
    click.echo(f"trayllm: error: {error.message}", err=True)
    try:
        return click.confirm("edit again?", default=True, err=True)
    except click.Abort:
        return False
