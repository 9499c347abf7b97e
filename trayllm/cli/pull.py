"""`trayllm pull ID`: the one command that downloads a model (trayllm.pull), with its progress on stderr."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from trayllm.cli.app import cli
from trayllm.hub import parse_hub_id
from trayllm.pull import PullFile, PullPlan, check_disk, download, plan_pull, size_text, verify

INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
_REDRAW_S = 0.2  # a terminal's progress line is redrawn at most this often
_STEP_PERCENT = 10  # without a terminal, one progress line per this much of the pull


class _Progress:
    """The pull's progress on stderr: one line redrawn in place on a terminal; into a log or a pipe, a line per
    file and per tenth of the total, so the record reads top to bottom."""

    def __init__(self, on_terminal: bool) -> None:
        self._on_terminal = on_terminal
        self._total = 0
        self._done = 0
        self._started = time.monotonic()
        self._drawn = 0.0
        self._step = 0
        self._file = ""

    def begin(self, plan: PullPlan) -> None:
        here = len(plan.files) - len(plan.missing)
        already = f" ({here} already here)" if here else ""
        self._total = plan.missing_bytes
        self._started = time.monotonic()
        click.echo(
            f"pulling {plan.hub_id} at {plan.commit[:12]}: {len(plan.missing)} files, "
            f"{size_text(self._total)}{already}",
            err=True,
        )

    def file_started(self, file: PullFile) -> None:
        self._file = file.name
        if not self._on_terminal:
            click.echo(f"  {file.name} ({size_text(file.size)})", err=True)

    def advance(self, nbytes: int) -> None:
        self._done += nbytes
        if self._on_terminal:
            if time.monotonic() - self._drawn >= _REDRAW_S:
                self._draw()
            return
        step = self._percent() // _STEP_PERCENT
        if step > self._step:
            self._step = step
            click.echo(f"  {self._line()}", err=True)

    def file_done(self, file: PullFile) -> None:
        if self._on_terminal:
            self._draw()

    def end(self) -> None:
        """Finish the line redrawn on a terminal (once: a second call adds nothing)."""
        if self._on_terminal and self._drawn:
            self._draw()
            click.echo("", err=True)
            self._drawn = 0.0

    def _percent(self) -> int:
        return 100 if not self._total else min(100, self._done * 100 // self._total)

    def _line(self) -> str:
        seconds = max(time.monotonic() - self._started, 1e-3)
        return (
            f"{self._percent():3d}%  {size_text(self._done)} / {size_text(self._total)}  "
            f"{size_text(self._done / seconds)}/s"
        )

    def _draw(self) -> None:
        self._drawn = time.monotonic()
        click.echo(f"\r\x1b[2K{self._line()}  {self._file}", nl=False, err=True)


@cli.command()
@click.argument("model_id", metavar="ID")
def pull(model_id: str) -> None:
    """Download a model from the Hugging Face hub, so that `model = "ID"` serves it.

    \b
    ID is org/name, org/name@revision, or org/name:FILE.gguf (one file of a GGUF repo).

    Only the files the engine loads are fetched: config, tokenizer, and the safetensors weights (PyTorch .bin
    where a repo has no safetensors), or the chosen GGUF. They go into the Hugging Face cache (HF_HOME,
    HF_HUB_CACHE), where the daemon finds them without a network. Free disk is checked first, and each file
    fetched is checked against its digest; Ctrl-C stops with every finished file kept, and running the command
    again fetches the rest. Private and gated repos need a login: hf auth login, or HF_TOKEN. HF_ENDPOINT points
    this at a mirror. The daemon's POST /api/pull does the same for Ollama's clients. See docs/MODELS.md.
    """
    hub_id = parse_hub_id(model_id)
    if hub_id is None:
        raise click.BadParameter("not a hub id: org/name, org/name@revision or org/name:FILE.gguf", param_hint="ID")
    from huggingface_hub import constants  # read now: the environment's HF_ENDPOINT and HF_HUB_CACHE

    endpoint, cache_dir = constants.ENDPOINT, Path(constants.HF_HUB_CACHE)
    progress = _Progress(on_terminal=sys.stderr.isatty())
    try:
        plan = plan_pull(hub_id, endpoint, cache_dir)
        check_disk(plan, cache_dir)
        download(plan, endpoint, cache_dir, progress)
        progress.end()
        if plan.missing:
            click.echo("verifying the files' digests", err=True)
            verify(plan, cache_dir)
    except KeyboardInterrupt:
        progress.end()
        click.echo(
            f"trayllm: interrupted; finished files are kept: run `trayllm pull {hub_id}` again to fetch the rest",
            err=True,
        )
        sys.exit(INTERRUPTED_EXIT)
    click.echo(f'{hub_id} is ready: set model = "{hub_id}" in the config file, or TRAYLLM_MODEL={hub_id}')
