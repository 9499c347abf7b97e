"""Commands that watch the daemon: `status`, `slo`, `events` and `logs` (its request records)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from trayllm import errors
from trayllm.cli.app import cli, settings_for
from trayllm.cli.render import format_event, format_slo_report, format_status
from trayllm.client import DaemonClient
from trayllm.elastic_options import elastic_options, elastic_settings
from trayllm.slo.sources import read_report
from trayllm.terminal_text import for_terminal

BREACHED_EXIT = 3  # 1 is an error making the report, 2 a usage error: a monitor can tell them apart


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print /v1/status as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """What the daemon is doing: model, queue, counters, memory."""
    with DaemonClient.from_settings(settings_for(ctx)) as client:
        daemon_status = client.status()
    click.echo(daemon_status.model_dump_json(indent=2) if as_json else format_status(daemon_status))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (the shape of GET /v1/slo).")
@click.option(
    "--from",
    "from_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Compute offline from a request-record file (and its rotated copies) instead of asking the daemon.",
)
@click.option("--from-elastic", is_flag=True, help="Compute from the records in Elasticsearch instead.")
@click.option(
    "--at",
    "at",
    metavar="TIME",
    help="With --from or --from-elastic: judge as of this moment (Unix seconds or ISO 8601; default now).",
)
@click.option(
    "--check",
    is_flag=True,
    help=f"Exit with status {BREACHED_EXIT} while any objective is breached (for scripts and monitors).",
)
@elastic_options
@click.pass_context
def slo(
    ctx: click.Context,
    as_json: bool,
    from_file: Path | None,
    from_elastic: bool,
    at: str | None,
    check: bool,
    **elastic: Any,
) -> None:
    """The SLO report: objective, window, value, threshold, state, error budget left.

    With --check the exit status says whether it is met: 0 when no objective is breached (too few samples
    counts as not breached), 3 while one is, 1 when the report could not be made at all.
    """
    settings = settings_for(ctx)
    if from_file is not None and from_elastic:
        raise click.UsageError("choose one of --from FILE and --from-elastic")
    if from_elastic:
        settings = elastic_settings(ctx.obj, **elastic)
    report = read_report(settings, records=from_file, from_elastic=from_elastic, at=at)
    click.echo(report.model_dump_json(indent=2) if as_json else format_slo_report(report))
    breached = [row.objective for row in report.objectives if row.state == "breach"]
    if check and breached:
        click.echo(f"trayllm: objective breached: {', '.join(breached)}", err=True)
        ctx.exit(BREACHED_EXIT)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event: {id, type, data}.")
@click.option("--last-event-id", metavar="ID", help="Start after this event id (replays what was kept since).")
@click.pass_context
def events(ctx: click.Context, as_json: bool, last_event_id: str | None) -> None:
    """Follow the daemon's alerts and state changes (GET /v1/events) until it stops."""
    with DaemonClient.from_settings(settings_for(ctx)) as client:
        for event in client.events(last_event_id):
            click.echo(
                json.dumps({"id": event.id, "type": event.type, "data": event.data}) if as_json else format_event(event)
            )


@cli.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing records as they are written.")
@click.option("--outcome", type=click.Choice(["success", "failure", "unknown"]), help="Only this event.outcome.")
@click.option("--user", help="Only this user.name.")
@click.option("--id", "request_id", metavar="ID", help="Only this request id (a prefix is enough).")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines, unchanged.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=None, help="Only the last N matching records.")
@click.pass_context
def logs(
    ctx: click.Context,
    follow: bool,
    outcome: str | None,
    user: str | None,
    request_id: str | None,
    as_json: bool,
    lines: int | None,
) -> None:
    """Show the request records (one per request), oldest first; --follow to keep watching."""
    from collections import deque

    from trayllm.telemetry.pretty import RecordFilter, format_record
    from trayllm.telemetry.reader import follow as follow_records
    from trayllm.telemetry.reader import iter_records

    path = settings_for(ctx).records_path
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
