"""Commands for Elasticsearch and Kibana: `elastic setup`, `elastic dashboards` and `ship` (docs/ELASTIC.md)."""

from __future__ import annotations

import signal
import sys
from typing import Any

import click

from trayllm import errors
from trayllm.cli.app import cli
from trayllm.cli.render import format_shipped
from trayllm.elastic_options import elastic_options, elastic_settings
from trayllm.redact import mask_url_credentials


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
def elastic_dashboards(
    ctx: click.Context, kibana_url: str | None, space: str | None, es_url: str | None, **credentials: Any
) -> None:
    """Import the trayllm data views and dashboard into Kibana (same credentials as Elasticsearch)."""
    from trayllm.elastic.kibana import import_dashboards

    settings = elastic_settings(ctx.obj, es_url=es_url, **credentials)
    url = kibana_url or settings.kibana_url
    if not url:
        raise errors.ConfigError("no Kibana URL: pass --kibana-url or set kibana_url (TRAYLLM_KIBANA_URL)")
    result = import_dashboards(
        url,
        api_key=settings.es_api_key or None,
        username=settings.es_username or None,
        password=settings.es_password or None,
        ca_file=settings.es_ca_file or None,
        space=space,
    )
    click.echo(result.summary())
    for problem in result.errors:
        click.echo(f"  {problem}", err=True)
    if not result.ok:
        sys.exit(1)
    click.echo(f'open {mask_url_credentials(url.rstrip("/"))}/app/dashboards and pick "trayllm"')


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
    click.echo(format_shipped(stats, target.shown_url, settings.shipping_path / "dead-letter.jsonl"))
