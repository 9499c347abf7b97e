"""Commands about which model is served: `models` (what this machine has, what fits, what serves) and `use`."""

from __future__ import annotations

import json

import click

from trayllm import api_status, errors
from trayllm.cli.app import cli, settings_for
from trayllm.cli.render import format_catalog
from trayllm.client import DaemonClient
from trayllm.config import Settings
from trayllm.doctor.gpus import probe
from trayllm.model_catalog import Catalog, build_catalog, model_setting_for
from trayllm.model_switch import switch_model
from trayllm.terminal_text import one_line


def catalog_here(settings: Settings) -> Catalog:
    """The catalog of this machine, marking what the daemon at ``settings``' socket serves (if one answers)."""
    return build_catalog(settings, probe(), serving_model(settings))


def serving_model(settings: Settings) -> api_status.ModelStatus | None:
    """The model the daemon serves now; None with no daemon, or one still loading."""
    try:
        with DaemonClient.from_settings(settings) as client:
            return client.status().model
    except errors.DaemonNotRunning:
        return None


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="As JSON: {gpu, gpu_note, serving, notes, models: [...]}.")
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """The models on this machine: the embedded one, the configured `model`, and the Hugging Face cache.

    Each with its size, format, precision and whether it fits the GPU (the doctor's rule, at the configured dtype
    and quantization); * marks the one the daemon serves. `trayllm use ID` switches to one.
    """
    catalog = catalog_here(settings_for(ctx))
    click.echo(json.dumps(catalog.to_json(), indent=2) if as_json else format_catalog(catalog))


@cli.command()
@click.argument("model_id", metavar="ID")
@click.pass_context
def use(ctx: click.Context, model_id: str) -> None:
    """Serve another model: ID from `trayllm models`, a path (.gguf file or Hugging Face directory), or a hub id.

    The daemon switches without a restart, showing its progress; the old model serves until the new one is
    checked (it resolves, its files read, it fits), and keeps serving if the switch fails. Once the new one
    serves, `model` is saved in the config file. With no daemon running, the choice is only saved.
    """
    settings = settings_for(ctx)
    chosen = model_setting_for(model_id, catalog_here(settings))
    switched = switch_model(
        settings, chosen, on_progress=lambda text: click.echo(one_line(f"trayllm: {text}"), err=True)
    )
    if switched.name is None:
        click.echo(one_line(f"saved model = {chosen!r} in {switched.saved}; the daemon loads it when it starts"))
    else:
        click.echo(one_line(f"now serving {switched.name} (version {switched.version}); saved in {switched.saved}"))
    if switched.overridden_by:
        click.echo(
            f"trayllm: note: {switched.overridden_by}, set in this environment, still overrides the file", err=True
        )
