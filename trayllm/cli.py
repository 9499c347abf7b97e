"""Command line: one entry point, thin sub-commands (parse, call, print).

Every TrayllmError ends here as one ``trayllm: error: ...`` line on stderr and exit status 1
(see ``_Cli.main``); click's own usage errors keep click's format and status 2. A command that needs an extra
the install lacks fails the same way, with the pip command that adds it (``_Command``, ``trayllm.extras``).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from trayllm import __version__, api, config, errors, extras, instances, launcher, lifecycle
from trayllm.chat.terminal import TerminalChat, complete_reply, stream_reply, timings_line
from trayllm.client import DaemonClient
from trayllm.elastic_options import elastic_options, elastic_settings
from trayllm.redact import mask_url_credentials
from trayllm.terminal_text import for_terminal, one_line


class _Command(click.Command):
    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a module only an extra installs, missing here, becomes one line naming that extra."""
        with extras.require_extra(ctx.command_path):
            return super().invoke(ctx)


class _Cli(click.Group):
    command_class = _Command
    group_class = type  # sub-groups (desktop, elastic, config) are _Cli too, so their commands are _Command

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


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="trayllm")


def _settings(ctx: click.Context, **overrides: Any) -> config.Settings:
    return config.load_settings({**ctx.obj, **overrides})


@click.group(cls=_Cli)
@click.option("--socket", metavar="PATH",
              help="The daemon's Unix socket (default: $XDG_RUNTIME_DIR/trayllm/daemon.sock).")
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
    trayllm bench --markdown    measure first-token latency and decode speed
    trayllm down                stop the tray, the chat windows and the daemon
    trayllm doctor              which GPU this is, and which model sizes it can run
    trayllm desktop install     start at login (systemd user units), menu entry and icon

    Settings come from ~/.config/trayllm/config.toml and TRAYLLM_* variables
    (`trayllm config show` lists them all).
    """
    ctx.obj = {"socket": socket}


# -- daemon lifecycle ---------------------------------------------------------------


@cli.command()
@click.option("--model", metavar="PATH", help="Hugging Face model directory or .gguf file (default: embedded SmolLM2).")
@click.option("--model-name", help="Name clients use in the 'model' field.")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--dtype", help="auto, float32, bfloat16 or float16.")
@click.option("--quantization", help="none, 4bit or 8bit (bitsandbytes, CUDA only).")
@click.option("--listen", metavar="HOST:PORT", help="Also serve TCP on 127.0.0.1:PORT (bearer token required).")
@click.option("--max-batch", type=int, help="Requests decoded together in one batch.")
@click.option("--queue-size", type=int, help="Requests that may wait before new ones get 503.")
@click.option("--warmup/--no-warmup", default=None, help="Run one short generation before turning ready.")
@click.option("--log-level", help="debug, info, warning or error.")
@click.pass_context
def daemon(ctx: click.Context, **options: Any) -> None:
    """Run the daemon in the foreground: load the model, serve the socket until SIGTERM."""
    settings = _settings(ctx, **options)
    from trayllm.daemon.server import run_daemon

    run_daemon(settings)


def daemon_command(settings: config.Settings) -> list[str]:
    """How `trayllm up` starts a daemon (tests replace this)."""
    return launcher.daemon_command(settings)


def _show_progress(status: api.DaemonStatus) -> None:
    progress = f": {status.load_progress}" if status.load_progress else ""
    click.echo(one_line(f"trayllm: daemon {status.state}{progress}"), err=True)


def _ensure_ready(client: DaemonClient, timeout: float, started: launcher.Started | None = None) -> api.DaemonStatus:
    """The daemon's status once ready; waits (showing progress) if it is still loading.

    With ``started`` (the daemon `up` just launched), a daemon that dies while loading is reported with
    this run's log lines.
    """
    if not client.health():
        client.status()  # raises DaemonNotRunning with the usual message
    seen: list[api.DaemonStatus] = []

    def progress(status: api.DaemonStatus) -> None:
        if seen or status.state != "ready":  # quiet when it was ready all along
            _show_progress(status)
        seen.append(status)

    try:
        return client.wait_ready(timeout, on_progress=progress, alive=None if started is None else started.running)
    except errors.DaemonNotRunning:
        if started is None or started.running():
            raise
        raise lifecycle.StartFailed(f"the daemon {started.failure()}") from None


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
    settings = _settings(ctx)
    with DaemonClient.from_settings(settings) as client:
        started = None
        if client.health():
            click.echo(f"trayllm: daemon already running on {settings.socket_path}", err=True)
        else:
            started = launcher.start_daemon(settings, daemon_command(settings))
            click.echo(f"trayllm: started the daemon ({started.where()})", err=True)
            lifecycle.wait_until_answering(client, started, timeout)
        if terminal or not launcher.has_display():
            if no_chat:
                return
            status = _ensure_ready(client, timeout, started)
            if status.model is not None:
                click.echo(one_line(f"trayllm: ready: {status.model.name} on {status.model.device} "
                                    f"({status.model.dtype}); `trayllm down` stops the daemon"), err=True)
            TerminalChat(client, system=system).run()
            return
    wanted: list[instances.Role] = ["tray"] * (not no_tray) + ["chat"] * (not no_chat)
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
        instance = lifecycle.start_client(settings, role)
    except lifecycle.StartFailed as exc:
        click.echo(f"trayllm: warning: {exc.message}", err=True)
        return False
    click.echo(f"trayllm: started the {what} (pid {instance.pid})", err=True)
    return True


@cli.command()
@click.option("--timeout", type=float, help="Seconds to wait for the daemon (default: shutdown_grace_s + 15).")
@click.pass_context
def down(ctx: click.Context, timeout: float | None) -> None:
    """Stop the tray and the chat windows, then the daemon (SIGTERM; running requests get to finish)."""
    settings = _settings(ctx)
    wait = timeout if timeout is not None else settings.shutdown_grace_s + 15
    lifecycle.stop_all(settings, wait, on_step=lambda line: click.echo(f"trayllm: {line}", err=True))


# -- talking to it ------------------------------------------------------------------


@cli.command()
@click.argument("prompt")
@click.option("--system", "-s", help="System prompt.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Most tokens in the reply.")
@click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature (0 = greedy).")
@click.option("--seed", type=int, help="Sampling seed, for repeatable replies.")
@click.option("--no-stream", is_flag=True, help="Wait for the whole reply instead of streaming it.")
@click.pass_context
def ask(ctx: click.Context, prompt: str, system: str | None, max_tokens: int | None, temperature: float | None,
        seed: int | None, no_stream: bool) -> None:
    """Ask one question (PROMPT, or - to read stdin); the reply goes to stdout, timings to stderr."""
    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise click.UsageError("the prompt is empty")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    options = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
    request = {"messages": messages, **{k: v for k, v in options.items() if v is not None}}
    with DaemonClient.from_settings(_settings(ctx)) as client:
        reply = (complete_reply if no_stream else stream_reply)(client, request, sys.stdout)
    click.echo(timings_line(reply), err=True)


@cli.command()
@click.option("--terminal", is_flag=True, help="Chat in this terminal even where a window could open.")
@click.option("--window", is_flag=True, help="Open the chat window even when not started from a terminal.")
@click.option("--system", "-s", help="System prompt.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Most tokens per reply.")
@click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature (0 = greedy).")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for a loading model.")
@click.pass_context
def chat(ctx: click.Context, terminal: bool, window: bool, system: str | None, max_tokens: int | None,
         temperature: float | None, timeout: float) -> None:
    """Chat with the model: the chat window on a desktop; in a terminal (or from a pipe) lines until /exit."""
    settings = _settings(ctx)
    if terminal and window:
        raise click.UsageError("choose one of --terminal and --window")
    if window and not launcher.has_display():
        raise errors.ConfigError("no display for the chat window (DISPLAY and WAYLAND_DISPLAY are unset); "
                                 "use `trayllm chat --terminal`")
    if window or (not terminal and launcher.has_display() and sys.stdin.isatty()):
        from trayllm.chat.app import run_window

        sys.exit(run_window(settings))
    with DaemonClient.from_settings(settings) as client:
        _ensure_ready(client, timeout)
        TerminalChat(client, system=system, options={"max_tokens": max_tokens, "temperature": temperature}).run()


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print /v1/status as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """What the daemon is doing: model, queue, counters, memory."""
    with DaemonClient.from_settings(_settings(ctx)) as client:
        daemon_status = client.status()
    click.echo(daemon_status.model_dump_json(indent=2) if as_json else format_status(daemon_status))


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m" if hours else f"{m}m {s:02d}s" if m else f"{seconds:.1f}s"


def format_status(s: api.DaemonStatus) -> str:
    rows = [("state", s.state + (f" ({s.load_progress})" if s.load_progress else ""))]
    if s.paused:
        rows.append(("paused", f"{s.paused} (`trayllm resume` to serve again)"))
    if s.error:
        rows.append(("error", s.error))
    if s.model:
        m = s.model
        rows.append(("model", f"{m.name} · version {m.version} · context {m.context_length}"))
        rows.append(("runs on", f"{m.device} · {m.dtype} · quantization {m.quantization}"))
    q, r = s.queue, s.requests
    backlog = f" · backlog cap {q.backlog_max_tokens} tokens" if q.backlog_cap_active else ""
    rows.append(("queue", f"{q.depth}/{q.capacity} waiting · {q.in_flight} in flight · batch {q.max_batch}{backlog}"))
    rows.append(("requests", f"{r.completed} completed · {r.failed} failed · {r.cancelled} cancelled · "
                             f"{r.rejected} rejected · tokens {r.tokens_in} in, {r.tokens_out} out"))
    if s.vram:
        gib = 1024**3
        pct = s.vram.used_bytes / s.vram.total_bytes * 100 if s.vram.total_bytes else 0.0
        rows.append(("vram", f"{s.vram.used_bytes / gib:.2f} / {s.vram.total_bytes / gib:.2f} GiB ({pct:.0f}%)"))
    for row in s.slo:
        if row.state != "insufficient":
            rows.append(("slo", f"{row.objective} {_slo_value(row.value, row.unit)} "
                                f"(limit {_slo_value(row.threshold, row.unit)}) {row.state}"))
    rows.extend(("alert", f"{a.severity}: {a.message}") for a in s.alerts)
    if s.shipping is not None:
        sh = s.shipping
        rows.append(("shipping", f"{sh.state} · {sh.delivered} delivered · {sh.duplicates} already there · "
                                 f"{sh.dead_lettered} dead-lettered"
                                 + (f" ({sh.unreadable} unreadable: torn or damaged lines)" if sh.unreadable else "")
                                 + f" · backlog {sh.backlog_bytes / 1e6:.1f} MB"
                                 + (f" · last error: {sh.last_error}" if sh.last_error else "")))
    rows.append(("uptime", _duration(s.uptime_s)))
    rows.append(("daemon", f"pid {s.pid} · trayllm {s.version}"))
    # every value may hold text from whoever paused, failed or named something: one line each, no escapes
    return "\n".join(f"{name:<9} {mask_url_credentials(one_line(value))}" for name, value in rows)


def _slo_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value * 100:.3g}%" if unit == "ratio" else f"{value:.3g} {unit}".rstrip()


# -- SLOs, events and control -------------------------------------------------------


def _parse_at(value: str | None) -> float:
    """--at as Unix seconds (now when not given)."""
    from trayllm.slo.report import parse_time

    if value is None:
        return time.time()
    try:
        return float(value)
    except ValueError:
        pass
    parsed = parse_time(value)
    if parsed is None:
        raise errors.ConfigError(f"--at wants Unix seconds or an ISO 8601 time, got {value!r}")
    return parsed


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (the shape of GET /v1/slo).")
@click.option("--from", "from_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Compute offline from a request-record file (and its rotated copies) instead of asking the daemon.")
@click.option("--from-elastic", is_flag=True, help="Compute from the records in Elasticsearch instead.")
@click.option("--at", "at", metavar="TIME", help="With --from or --from-elastic: judge as of this moment (Unix "
                                                 "seconds or ISO 8601; default now).")
@elastic_options
@click.pass_context
def slo(ctx: click.Context, as_json: bool, from_file: Path | None, from_elastic: bool, at: str | None,
        **elastic: Any) -> None:
    """The SLO report: objective, window, value, threshold, state, error budget left."""
    from trayllm.slo.objectives import configured_objectives
    from trayllm.slo.report import ReportRow, slo_report, to_text
    from trayllm.telemetry.reader import iter_records

    settings = _settings(ctx)
    if from_file is not None and from_elastic:
        raise click.UsageError("choose one of --from FILE and --from-elastic")
    if from_elastic:
        from trayllm.elastic.connection import ElasticTarget, check_version
        from trayllm.elastic.slo_query import slo_report_from_elastic

        settings = elastic_settings(ctx.obj, **elastic)
        target = ElasticTarget.from_settings(settings)
        es = target.client()
        check_version(es, target.url)
        now = _parse_at(at)
        rows = slo_report_from_elastic(es, configured_objectives(settings), now, target.url)
    elif from_file is None:
        if at is not None:
            raise errors.ConfigError("--at needs --from FILE or --from-elastic: the daemon only judges the present")
        with DaemonClient.from_settings(settings) as client:
            report = client.slo()
    else:
        if not from_file.exists():
            raise errors.ConfigError(f"no record file at {from_file}")
        now = _parse_at(at)
        rows = slo_report(configured_objectives(settings), iter_records(from_file), now)
    if from_elastic or from_file is not None:  # computed here: no alert states, only the daemon has those
        report = api.SloReport(at=now, objectives=[api.SloRow(**r.to_dict()) for r in rows], alerts={})
    if as_json:
        click.echo(report.model_dump_json(indent=2))
        return
    shown = [{name: one_line(value) if isinstance(value, str) else value for name, value in row.model_dump().items()}
             for row in report.objectives]  # the daemon's report: its names are text for one table cell each
    click.echo(to_text([ReportRow(**row) for row in shown]))
    firing = sorted(key for key, state in report.alerts.items() if state == "firing")
    if firing:
        click.echo(one_line(f"firing: {', '.join(firing)}"))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event: {id, type, data}.")
@click.option("--last-event-id", metavar="ID", help="Start after this event id (replays what was kept since).")
@click.pass_context
def events(ctx: click.Context, as_json: bool, last_event_id: str | None) -> None:
    """Follow the daemon's alerts and state changes (GET /v1/events) until it stops."""
    with DaemonClient.from_settings(_settings(ctx)) as client:
        for event in client.events(last_event_id):
            if as_json:
                click.echo(json.dumps({"id": event.id, "type": event.type, "data": event.data}), nl=True)
                continue
            at = time.strftime("%H:%M:%S", time.localtime(event.data.get("at", time.time())))
            text = event.data.get("message") or ", ".join(
                f"{k}={v}" for k, v in event.data.items() if k not in ("at", "alerts") and v is not None)
            click.echo(one_line(f"{at} {event.type:<20} {text}"))


@cli.command()
@click.argument("reason", required=False)
@click.pass_context
def pause(ctx: click.Context, reason: str | None) -> None:
    """Refuse new requests (503 paused) until `trayllm resume`; running ones finish."""
    with DaemonClient.from_settings(_settings(ctx)) as client:
        client.pause(reason)
    click.echo("paused: new requests get 503 until `trayllm resume`")


@cli.command()
@click.pass_context
def resume(ctx: click.Context) -> None:
    """Serve again after `trayllm pause`."""
    with DaemonClient.from_settings(_settings(ctx)) as client:
        client.resume()
    click.echo("serving")


@cli.command()
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for the new load.")
@click.pass_context
def reload(ctx: click.Context, timeout: float) -> None:
    """Reload the model (say, after its files changed) without restarting the daemon."""
    with DaemonClient.from_settings(_settings(ctx)) as client:
        client.reload()
        ready = client.wait_ready(timeout, _show_progress)
    assert ready.model is not None
    click.echo(one_line(f"reloaded {ready.model.name} (version {ready.model.version})"))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--context", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Context length the fit table budgets KV cache for.")
@click.option("--vram", "planned_gib", type=click.FloatRange(min=1), metavar="GIB",
              help="Plan for a GPU with this much memory (all free) instead of the GPUs here.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, context: int, planned_gib: float | None) -> None:
    """What GPU this machine has, and which model sizes it can run at fp16, 8-bit and 4-bit."""
    from trayllm.doctor.gpus import probe
    from trayllm.doctor.report import doctor_report, to_text

    report = doctor_report(probe(), context, _settings(ctx).vram_limit, planned_gib)
    click.echo(json.dumps(report, indent=2) if as_json else to_text(report))


@cli.command()
@click.pass_context
def tray(ctx: click.Context) -> None:
    """Show the tray icon: daemon health, a menu (chat, dashboards, pause, reload), alert notifications."""
    from trayllm.tray.app import TrayApp

    try:
        TrayApp(_settings(ctx)).run()
    except instances.AlreadyRunning as exc:  # autostart and `trayllm up` may both start one: not an error
        click.echo(f"trayllm: {exc.message}", err=True)


# -- desktop integration ------------------------------------------------------------


@cli.group("desktop")
def desktop_group() -> None:
    """Start at login and show in the menu: systemd user units, autostart and launcher entries, the icon."""


def _echo_warning(message: str) -> None:
    click.echo(f"trayllm: warning: {message}", err=True)


@desktop_group.command("install")
@click.option("--no-systemd", is_flag=True,
              help="Write no systemd units: the autostart entry starts the tray, the daemon starts on demand.")
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


# -- Elastic ------------------------------------------------------------------------


@cli.group("elastic")
def elastic_group() -> None:
    """Set up Elasticsearch and Kibana for trayllm's records (docs/ELASTIC.md)."""


@elastic_group.command("setup")
@elastic_options
@click.pass_context
def elastic_setup(ctx: click.Context, **options: Any) -> None:
    """Install the lifecycle policy and the index templates of both record streams."""
    from trayllm.elastic.connection import ElasticTarget, check_version
    from trayllm.elastic.templates import install

    target = ElasticTarget.from_settings(elastic_settings(ctx.obj, **options))
    es = target.client()
    version = check_version(es, target.url)
    click.echo(f"Elasticsearch {version} at {target.shown_url}")
    for line in install(es, target.url):
        click.echo(f"  installed {line}")


@elastic_group.command("dashboards")
@click.option("--kibana-url", metavar="URL", help="Kibana URL (default: the kibana_url setting).")
@click.option("--space", help="Kibana space to import into (default: the default space).")
@elastic_options
@click.pass_context
def elastic_dashboards(ctx: click.Context, kibana_url: str | None, space: str | None, es_url: str | None,
                       **credentials: Any) -> None:
    """Import the trayllm data views and dashboard into Kibana (same credentials as Elasticsearch)."""
    from trayllm.elastic.kibana import import_dashboards

    settings = elastic_settings(ctx.obj, es_url=es_url, **credentials)
    url = kibana_url or settings.kibana_url
    if not url:
        raise errors.ConfigError("no Kibana URL: pass --kibana-url or set kibana_url (TRAYLLM_KIBANA_URL)")
    result = import_dashboards(url, api_key=settings.es_api_key or None, username=settings.es_username or None,
                               password=settings.es_password or None, ca_file=settings.es_ca_file or None, space=space)
    click.echo(result.summary())
    for problem in result.errors:
        click.echo(f"  {problem}", err=True)
    if not result.ok:
        sys.exit(1)
    click.echo(f"open {mask_url_credentials(url.rstrip('/'))}/app/dashboards and pick \"trayllm\"")


@cli.command()
@elastic_options
@click.option("--once", is_flag=True, help="Ship what is there, then exit (default: keep following the files).")
@click.pass_context
def ship(ctx: click.Context, once: bool, **options: Any) -> None:
    """Ship the request and alert records to Elasticsearch, exactly once, from where shipping last stopped."""
    from trayllm.elastic.connection import ElasticTarget, check_version
    from trayllm.elastic.shipper import Shipper

    settings = elastic_settings(ctx.obj, **options)
    target = ElasticTarget.from_settings(settings)
    es = target.client()
    check_version(es, target.url)
    shipper = Shipper(settings, es)
    shipper.open()
    previous = signal.signal(signal.SIGTERM, lambda *_: shipper.stop())
    try:
        stats = shipper.run(once=once)
    except KeyboardInterrupt:
        stats = shipper.stats
    finally:
        signal.signal(signal.SIGTERM, previous)
        shipper.close()
    click.echo(f"shipped to {target.shown_url}: {stats.delivered} new, {stats.duplicates} already there, "
               f"{stats.dead_lettered} dead-lettered ({stats.unreadable} unreadable lines; see "
               f"{settings.shipping_path / 'dead-letter.jsonl'}), "
               f"{stats.retries} retries; backlog {stats.backlog_bytes} bytes")


# -- logs ---------------------------------------------------------------------------


@cli.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing records as they are written.")
@click.option("--outcome", type=click.Choice(["success", "failure", "unknown"]), help="Only this event.outcome.")
@click.option("--user", help="Only this user.name.")
@click.option("--id", "request_id", metavar="ID", help="Only this request id (a prefix is enough).")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines, unchanged.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=None, help="Only the last N matching records.")
@click.pass_context
def logs(ctx: click.Context, follow: bool, outcome: str | None, user: str | None, request_id: str | None,
         as_json: bool, lines: int | None) -> None:
    """Show the request records (one per request), oldest first; --follow to keep watching."""
    from collections import deque

    from trayllm.telemetry.pretty import RecordFilter, format_record
    from trayllm.telemetry.reader import follow as follow_records
    from trayllm.telemetry.reader import iter_records

    path = _settings(ctx).records_path
    if not path.exists() and not follow:
        raise errors.TrayllmError(f"no request records yet at {path}; they appear once the daemon served a request")
    wanted = RecordFilter(outcome=outcome, user=user, request_id=request_id)

    def show(record: Any) -> None:
        click.echo(json.dumps(record, ensure_ascii=False) if as_json else for_terminal(format_record(record)))

    past = wanted.apply(iter_records(path)) if path.exists() else iter([])
    for record in deque(past, maxlen=lines) if lines is not None else past:
        show(record)
    if follow:
        for record in wanted.apply(follow_records(path)):
            show(record)


# -- bench --------------------------------------------------------------------------


def _levels(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        levels = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter("give whole numbers separated by commas, e.g. 1,8") from None
    if not levels or min(levels) < 1:
        raise click.BadParameter("every level must be at least 1")
    return levels


@cli.command()
@click.option("--concurrency", default="1,8", show_default=True, callback=_levels, help="Concurrency levels.")
@click.option("--requests-per-level", "-n", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--markdown", is_flag=True, help="Print a Markdown section for docs/BENCHMARKS.md.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for a loading model.")
@click.option("--startup", "startup_runs", type=click.IntRange(min=1), default=None, metavar="RUNS",
              help="Instead: time RUNS warm starts of a fresh daemon until /readyz (after one priming start).")
@click.option("--telemetry-overhead", "overhead_rounds", type=click.IntRange(min=0), default=None, metavar="ROUNDS",
              help="Instead: time the request records directly, then ROUNDS alternating daemons with telemetry "
                   "off and on, each serving --requests-per-level requests (0 = direct only).")
@click.option("--slo", "slo_records", type=click.IntRange(min=1), default=None, metavar="RECORDS",
              help="Instead: time refilling the SLO windows from RECORDS synthetic records, and one evaluation.")
@click.option("--shipping", "ship_records", type=click.IntRange(min=1), default=None, metavar="RECORDS",
              help="Instead: ship RECORDS synthetic records to --es-url and time it; with --shipping-rounds, also "
                   "compare daemon latency with shipping off and on.")
@click.option("--soak", "soak_minutes", type=click.FloatRange(min=0, min_open=True), default=None, metavar="MINUTES",
              help="Instead: keep the highest --concurrency level of streamed requests going for MINUTES and sample "
                   "the daemon's RSS, open fds and first-token p99 every --soak-interval (on the daemon's machine).")
@click.option("--soak-interval", type=click.FloatRange(min=1), default=60.0, show_default=True, metavar="SECONDS")
@click.option("--shipping-rounds", type=click.IntRange(min=0), default=0, show_default=True,
              help="Alternating daemon pairs for the latency comparison (each serves --requests-per-level).")
@elastic_options
@click.pass_context
def bench(ctx: click.Context, concurrency: list[int], requests_per_level: int, max_tokens: int, as_json: bool,
          markdown: bool, timeout: float, startup_runs: int | None, overhead_rounds: int | None,
          slo_records: int | None, ship_records: int | None, soak_minutes: float | None, soak_interval: float,
          shipping_rounds: int, **elastic: Any) -> None:
    """Measure first-token latency and decode speed at each concurrency level (streamed, temperature 0)."""
    from trayllm.bench import load, report

    if as_json and markdown:
        raise click.UsageError("choose one of --json and --markdown")
    settings = _settings(ctx)
    if ship_records is not None:
        from trayllm.bench import shipping
        from trayllm.elastic.connection import ElasticTarget, check_version

        target = ElasticTarget.from_settings(elastic_settings(ctx.obj, **elastic))
        check_version(target.client(), target.url)
        throughput = shipping.measure_throughput(target, ship_records)
        latency = (shipping.measure_latency(settings, target, shipping_rounds, requests_per_level, max_tokens,
                                            ship_records, timeout) if shipping_rounds else None)
        click.echo(shipping.to_markdown(throughput, latency, report.command_line()))
        return
    if slo_records is not None:
        from trayllm.bench import slo as slo_bench

        click.echo(slo_bench.to_markdown(slo_bench.measure_slo(slo_records), report.command_line()))
        return
    if overhead_rounds is not None:
        from trayllm.bench import telemetry

        direct = telemetry.measure_direct()
        e2e = (telemetry.measure_end_to_end(settings, overhead_rounds, requests_per_level, max_tokens, timeout)
               if overhead_rounds else None)
        click.echo(telemetry.to_markdown(direct, e2e, report.command_line()))
        return
    if startup_runs is not None:
        from trayllm.bench import startup

        results = startup.measure_startup(settings, startup_runs, timeout)
        click.echo(startup.to_markdown(results, report.command_line()))
        return
    with DaemonClient.from_settings(settings) as client:
        daemon_status = _ensure_ready(client, timeout)
    if soak_minutes is not None:
        from trayllm.bench import soak

        level = max(concurrency)
        samples = soak.run_soak(lambda: DaemonClient.from_settings(settings), daemon_status.pid, soak_minutes * 60,
                                level, max_tokens, soak_interval, on_sample=lambda s: click.echo(
                                    f"bench: soak {s.elapsed_s / 60:.1f} min: {s.requests} requests, {s.errors} "
                                    f"errors, RSS {s.process.rss_mib:.1f} MiB, {s.process.open_fds} fds", err=True))
        click.echo(soak.to_markdown(samples, concurrency=level, max_tokens=max_tokens, command=report.command_line()))
        return
    counts: dict[int, list[int]] = {}
    lock = threading.Lock()

    def progress(level: int, result: load.RequestResult) -> None:
        with lock:
            done = counts.setdefault(level, [0, 0])
            done[0] += 1
            done[1] += result.error is not None
            click.echo(f"bench: concurrency {level}: {done[0]}/{requests_per_level} requests, {done[1]} errors",
                       err=True)

    levels = load.run_bench(lambda: DaemonClient.from_settings(settings), concurrency, requests_per_level, max_tokens,
                            on_result=progress)
    command = report.command_line()
    if as_json:
        click.echo(report.to_json(levels, max_tokens=max_tokens, status=daemon_status, command=command))
    elif markdown:
        click.echo(report.to_markdown(levels, max_tokens=max_tokens, status=daemon_status, command=command))
    else:
        click.echo(report.to_text(levels))


# -- config -------------------------------------------------------------------------


@cli.group("config")
def config_group() -> None:
    """Show, locate and edit the settings (every one is in docs/CONFIG.md)."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="One object per setting: name, env, value, default, help.")
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Every setting's value (defaults < config file < TRAYLLM_* < flags), as TOML you can copy."""
    rows = config.describe_settings(_settings(ctx))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        changed = "" if row["value"] == row["default"] else f" (default {config.toml_value(row['default'])})"
        click.echo(f"# {row['help']} [{row['env']}]{changed}\n{row['name']} = {config.toml_value(row['value'])}\n")


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
        click.echo(f"trayllm: note: {', '.join(overriding)}, set in this environment, still override the file",
                   err=True)
    try:
        daemon_running = _settings(ctx).socket_path.is_socket()
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
