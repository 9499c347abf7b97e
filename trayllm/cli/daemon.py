"""Commands that start, stop and steer the daemon and the tray: daemon, up, down, reload, pause, resume, tray.

`up` and `down` ask the supervisor (trayllm.supervisor) to start and stop the processes: the same start path
the tray and the chat window use.
"""

from __future__ import annotations

from typing import Any

import click

from trayllm import config, errors
from trayllm.chat.terminal import TerminalChat
from trayllm.cli.app import cli, settings_for
from trayllm.cli.ready import ensure_ready, show_progress
from trayllm.client import DaemonClient
from trayllm.supervisor import clients, instances, runners
from trayllm.supervisor.daemon import DaemonSupervisor, StartFailed
from trayllm.terminal_text import one_line


@cli.command()
@click.option("--model", metavar="PATH", help="Hugging Face model directory or .gguf file (default: embedded SmolLM2).")
@click.option("--model-name", help="Name clients use in the 'model' field.")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--dtype", help="auto, float32, bfloat16 or float16.")
@click.option("--quantization", help="none, int8 (CPU), 4bit or 8bit (bitsandbytes, CUDA).")
@click.option("--listen", metavar="HOST:PORT", help="Also serve TCP on 127.0.0.1:PORT (bearer token required).")
@click.option("--max-batch", type=int, help="Requests decoded together in one batch.")
@click.option("--queue-size", type=int, help="Requests that may wait before new ones get 503.")
@click.option("--warmup/--no-warmup", default=None, help="Run one short generation before turning ready.")
@click.option("--log-level", help="debug, info, warning or error.")
@click.pass_context
def daemon(ctx: click.Context, **options: Any) -> None:
    """Run the daemon in the foreground: load the model, serve the socket until SIGTERM."""
    settings = settings_for(ctx, **options)
    from trayllm.daemon.server import run_daemon

    run_daemon(settings)


# -- start and stop: `up`, `down` and their helpers ---------------------------------


def daemon_command(settings: config.Settings) -> list[str]:
    """How `trayllm up` starts a daemon (tests replace this)."""
    return runners.daemon_command(settings)


@cli.command()
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for the model to load.")
@click.option("--system", help="System prompt for the terminal chat.")
@click.option("--terminal", is_flag=True, help="Chat in this terminal even on a desktop (no tray, no window).")
@click.option("--no-tray", is_flag=True, help="On a desktop: do not start the tray icon.")
@click.option("--no-chat", is_flag=True, help="Start the daemon (and on a desktop the tray), but no chat.")
@click.pass_context
def up(ctx: click.Context, timeout: float, system: str | None, terminal: bool, no_tray: bool, no_chat: bool) -> None:
    """Start trayllm: the daemon unless one runs, then on a desktop the tray and the chat window, else a terminal chat.

    On a desktop it returns once everything is up (the tray shows when the model is ready); `trayllm down`
    stops the daemon, the tray and the chat windows.
    """
    settings = settings_for(ctx)
    with DaemonClient.from_settings(settings) as client:
        runner = runners.daemon_runner(settings, daemon_command(settings))
        supervisor = DaemonSupervisor(settings, client, runner=runner)
        supervisor.bring_up(timeout, say=lambda line: click.echo(f"trayllm: {line}", err=True))
        if terminal or not clients.has_display():
            if no_chat:
                return
            status = ensure_ready(supervisor, timeout)
            if status.model is not None:
                click.echo(
                    one_line(
                        f"trayllm: ready: {status.model.name} on {status.model.device} "
                        f"({status.model.dtype}); `trayllm down` stops the daemon"
                    ),
                    err=True,
                )
            TerminalChat(client, system=system).run()
            return
    choices: list[tuple[instances.Role, bool]] = [("tray", no_tray), ("chat", no_chat)]
    wanted = [role for role, left_out in choices if not left_out]
    failed = [role for role in wanted if not _start_client(settings, role)]
    if failed:
        raise errors.TrayllmError(f"trayllm is up without the {' and the '.join(failed)} (see above)")
    click.echo("trayllm: up; `trayllm down` stops the daemon, the tray and the chat windows", err=True)


def _start_client(settings: config.Settings, role: instances.Role) -> bool:
    """Start the tray or a chat window unless one runs; False (after saying why) when it did not come up."""
    what = "chat window" if role == "chat" else role
    already = instances.running(settings, role)
    if already:
        click.echo(f"trayllm: the {what} is already open (pid {already[0].pid})", err=True)
        return True
    try:
        instance = clients.launch_client(settings, role)
    except StartFailed as exc:
        click.echo(f"trayllm: warning: {exc.message}", err=True)
        return False
    click.echo(f"trayllm: started the {what} (pid {instance.pid})", err=True)
    return True


@cli.command()
@click.option("--timeout", type=float, help="Seconds to wait for the daemon (default: shutdown_grace_s + 15).")
@click.pass_context
def down(ctx: click.Context, timeout: float | None) -> None:
    """Stop the tray and the chat windows, then the daemon (SIGTERM; running requests get to finish)."""
    settings = settings_for(ctx)
    wait = timeout if timeout is not None else settings.shutdown_grace_s + 15
    clients.stop_all(settings, wait, on_step=lambda line: click.echo(f"trayllm: {line}", err=True))


# -- steering a running daemon ------------------------------------------------------


@cli.command()
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for the new load.")
@click.pass_context
def reload(ctx: click.Context, timeout: float) -> None:
    """Reload the model (say, after its files changed) without restarting the daemon."""
    with DaemonClient.from_settings(settings_for(ctx)) as client:
        client.reload()
        ready = client.wait_ready(timeout, show_progress)
    assert ready.model is not None
    click.echo(one_line(f"reloaded {ready.model.name} (version {ready.model.version})"))


@cli.command()
@click.argument("reason", required=False)
@click.pass_context
def pause(ctx: click.Context, reason: str | None) -> None:
    """Refuse new requests (503 paused) until `trayllm resume`; running ones finish."""
    with DaemonClient.from_settings(settings_for(ctx)) as client:
        client.pause(reason)
    click.echo("paused: new requests get 503 until `trayllm resume`")


@cli.command()
@click.pass_context
def resume(ctx: click.Context) -> None:
    """Serve again after `trayllm pause`."""
    with DaemonClient.from_settings(settings_for(ctx)) as client:
        client.resume()
    click.echo("serving")


@cli.command()
@click.pass_context
def tray(ctx: click.Context) -> None:
    """Show the tray icon: daemon health, a menu (chat, dashboards, pause, reload), alert notifications."""
    from trayllm.tray.app import TrayApp

    try:
        TrayApp(settings_for(ctx)).run()
    except instances.AlreadyRunning as exc:  # autostart and `trayllm up` may both start one: not an error
        click.echo(f"trayllm: {exc.message}", err=True)
