"""`trayllm bench MODE`: one subcommand per measurement, each with only the options it reads.

Bare `trayllm bench` shows the help listing the modes. ``load`` measures a running daemon, or with ``--url``
any OpenAI-compatible server (to set trayllm's figures beside its peers'); ``startup``,
``telemetry`` and ``shipping`` start private daemons of their own; ``slo`` needs no daemon; ``soak`` loads a
running daemon for a long time and reads its footprint from /proc (so it runs on the daemon's machine).
Every report names the command line it came from, for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from trayllm import errors
from trayllm.cli.app import cli, settings_for
from trayllm.cli.ready import ensure_ready
from trayllm.cli.render import format_soak_sample
from trayllm.client import DaemonClient
from trayllm.elastic_options import elastic_options, elastic_settings
from trayllm.supervisor.daemon import DaemonSupervisor

if TYPE_CHECKING:
    from trayllm.bench.load import ChatStreamer

# the options several modes share, declared once so each keeps one meaning and one default
_max_tokens = click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Most tokens per reply (temperature 0).",
)
_timeout = click.option(
    "--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for a loading model."
)


def _requests(meaning: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--requests-per-level (-n): how many requests, per level or per daemon as ``meaning`` says."""
    return click.option(
        "--requests-per-level", "-n", type=click.IntRange(min=1), default=16, show_default=True, help=meaning
    )


@cli.group("bench")
def bench_group() -> None:
    """Measure trayllm, one mode per subcommand: load, startup, telemetry, slo, shipping, soak.

    `trayllm bench load` measures first-token latency and decode speed; each other mode measures one cost.
    """


def _levels(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        levels = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter("give whole numbers separated by commas, e.g. 1,8") from None
    if not levels or min(levels) < 1:
        raise click.BadParameter("every level must be at least 1")
    return levels


def _ready_server(
    url: str, api_key_file: Path | None, model: str | None, timeout: float
) -> tuple[Callable[[], ChatStreamer], str | None]:
    """A client factory for ``url`` and the model to ask for, once one warm-up request has succeeded."""
    from trayllm.bench import load, openai_url

    api_key = openai_url.read_api_key(api_key_file) if api_key_file else None
    make_client = functools.partial(openai_url.OpenAIServer, url, api_key=api_key)
    with make_client() as probe:
        model = openai_url.wait_until_serving(probe, model, timeout)
        warm_up = load.run_one(probe, load.PROMPTS[0], 2, model)
    if warm_up.error:
        raise errors.ServiceUnavailable(f"the warm-up request to {url} failed: {warm_up.error}")
    return make_client, model


@bench_group.command("load")
@click.option("--concurrency", default="1,8", show_default=True, callback=_levels, help="Concurrency levels.")
@_requests("Requests at each concurrency level.")
@_max_tokens
@click.option(
    "--url",
    metavar="BASE_URL",
    help="Measure this OpenAI-compatible server instead of the daemon (e.g. http://127.0.0.1:8080/v1).",
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the bearer key for --url.",
)
@click.option("--model", help="Model id to ask for (default: the daemon's; with --url, the first it lists).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--markdown", is_flag=True, help="Print a Markdown section for docs/BENCHMARKS.md.")
@_timeout
@click.pass_context
def bench_load(
    ctx: click.Context,
    concurrency: list[int],
    requests_per_level: int,
    max_tokens: int,
    url: str | None,
    api_key_file: Path | None,
    model: str | None,
    as_json: bool,
    markdown: bool,
    timeout: float,
) -> None:
    """Measure first-token latency and decode speed at each concurrency level (streamed, temperature 0).

    With --url, any OpenAI-compatible server (llama.cpp's server, transformers serve, vLLM, Ollama's /v1) is
    driven with standard fields only, after one unmeasured warm-up request (some servers load on first use).
    """
    from trayllm.bench import load, report

    if as_json and markdown:
        raise click.UsageError("choose one of --json and --markdown")
    if api_key_file is not None and url is None:
        raise click.UsageError("--api-key-file goes with --url")
    daemon_status = server = None
    make_client: Callable[[], ChatStreamer]
    if url is None:
        settings = settings_for(ctx)
        with DaemonClient.from_settings(settings) as client:
            daemon_status = ensure_ready(DaemonSupervisor(settings, client), timeout)
        make_client = functools.partial(DaemonClient.from_settings, settings)
    else:
        make_client, model = _ready_server(url, api_key_file, model, timeout)
        server = f"{url}, model {model or '(server default)'}"
    counts: dict[int, list[int]] = {}
    lock = threading.Lock()

    def progress(level: int, result: load.RequestResult) -> None:
        with lock:
            done = counts.setdefault(level, [0, 0])
            done[0] += 1
            done[1] += result.error is not None
            click.echo(
                f"bench: concurrency {level}: {done[0]}/{requests_per_level} requests, {done[1]} errors", err=True
            )

    levels = load.run_bench(make_client, concurrency, requests_per_level, max_tokens, on_result=progress, model=model)
    command = report.command_line()
    if as_json:
        click.echo(report.to_json(levels, max_tokens=max_tokens, status=daemon_status, command=command, server=server))
    elif markdown:
        click.echo(
            report.to_markdown(levels, max_tokens=max_tokens, status=daemon_status, command=command, server=server)
        )
    else:
        click.echo(report.to_text(levels))


@bench_group.command("startup")
@click.argument("runs", type=click.IntRange(min=1))
@_timeout
@click.pass_context
def bench_startup(ctx: click.Context, runs: int, timeout: float) -> None:
    """Time RUNS warm starts of a fresh daemon until /readyz (after one priming start)."""
    from trayllm.bench import report, startup

    results = startup.measure_startup(settings_for(ctx), runs, timeout)
    click.echo(startup.to_markdown(results, report.command_line()))


@bench_group.command("telemetry")
@click.argument("rounds", type=click.IntRange(min=0))
@_requests("Requests each daemon serves.")
@_max_tokens
@_timeout
@click.pass_context
def bench_telemetry(ctx: click.Context, rounds: int, requests_per_level: int, max_tokens: int, timeout: float) -> None:
    """Time what writing the request records costs.

    First directly, then over ROUNDS alternating daemons with telemetry off and on, each serving
    --requests-per-level requests (0 = direct only).
    """
    from trayllm.bench import report, telemetry

    direct = telemetry.measure_direct()
    e2e = (
        telemetry.measure_end_to_end(settings_for(ctx), rounds, requests_per_level, max_tokens, timeout)
        if rounds
        else None
    )
    click.echo(telemetry.to_markdown(direct, e2e, report.command_line()))


@bench_group.command("slo")
@click.argument("records", type=click.IntRange(min=1))
def bench_slo(records: int) -> None:
    """Time refilling the SLO windows from RECORDS synthetic records, and one evaluation."""
    from trayllm.bench import report
    from trayllm.bench import slo as slo_bench

    click.echo(slo_bench.to_markdown(slo_bench.measure_slo(records), report.command_line()))


@bench_group.command("shipping")
@click.argument("records", type=click.IntRange(min=1))
@click.option(
    "--rounds",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Alternating daemon pairs for the latency comparison (each serves --requests-per-level).",
)
@_requests("Requests each daemon serves.")
@_max_tokens
@_timeout
@elastic_options
@click.pass_context
def bench_shipping(
    ctx: click.Context,
    records: int,
    rounds: int,
    requests_per_level: int,
    max_tokens: int,
    timeout: float,
    **elastic: Any,
) -> None:
    """Time shipping RECORDS synthetic records to --es-url.

    With --rounds, also compare daemon latency with shipping off and on.
    """
    from trayllm.bench import report, shipping
    from trayllm.elastic.connection import ElasticTarget, check_version

    target = ElasticTarget.from_settings(elastic_settings(ctx.obj, **elastic))
    check_version(target.client(), target.url)
    throughput = shipping.measure_throughput(target, records)
    latency = (
        shipping.measure_latency(settings_for(ctx), target, rounds, requests_per_level, max_tokens, records, timeout)
        if rounds
        else None
    )
    click.echo(shipping.to_markdown(throughput, latency, report.command_line()))


@bench_group.command("soak")
@click.argument("minutes", type=click.FloatRange(min=0, min_open=True))
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Streamed requests kept going at once.",
)
@_max_tokens
@click.option(
    "--interval",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between samples.",
)
@_timeout
@click.pass_context
def bench_soak(
    ctx: click.Context, minutes: float, concurrency: int, max_tokens: int, interval: float, timeout: float
) -> None:
    """Load the daemon for MINUTES and sample its footprint.

    Keeps --concurrency streamed requests going and samples the daemon's RSS, open fds and first-token p99 every
    --interval (on the daemon's machine).
    """
    from trayllm.bench import report, soak

    settings = settings_for(ctx)
    with DaemonClient.from_settings(settings) as client:
        daemon_status = ensure_ready(DaemonSupervisor(settings, client), timeout)
    samples = soak.run_soak(
        lambda: DaemonClient.from_settings(settings),
        daemon_status.pid,
        minutes * 60,
        concurrency,
        max_tokens,
        interval,
        on_sample=lambda s: click.echo(format_soak_sample(s), err=True),
    )
    click.echo(soak.to_markdown(samples, concurrency=concurrency, max_tokens=max_tokens, command=report.command_line()))
