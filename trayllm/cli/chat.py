"""Commands that talk to the model: `ask` one question, `chat` in a window or the terminal."""

from __future__ import annotations

import select
import sys

import click

from trayllm import errors
from trayllm.chat.terminal import TerminalChat, complete_reply, stream_reply, timings_line
from trayllm.cli.app import cli, settings_for
from trayllm.cli.ready import ensure_ready
from trayllm.client import DaemonClient
from trayllm.supervisor.clients import has_display
from trayllm.supervisor.daemon import DaemonSupervisor


@cli.command()
@click.argument("prompt", required=False)
@click.option("--system", "-s", help="System prompt.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Most tokens in the reply.")
@click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature (0 = greedy).")
@click.option("--seed", type=int, help="Sampling seed, for repeatable replies.")
@click.option("--no-stream", is_flag=True, help="Wait for the whole reply instead of streaming it.")
@click.pass_context
def ask(
    ctx: click.Context,
    prompt: str | None,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    seed: int | None,
    no_stream: bool,
) -> None:
    """Ask one question; the reply goes to stdout, timings to stderr.

    The prompt is PROMPT, text piped to stdin, or both: the piped text, a space, then PROMPT (as `llm` does),
    so `git diff | trayllm ask "review this"` works. PROMPT - (or none) reads stdin to its end.
    """
    prompt = combined_prompt(prompt)
    if not prompt.strip():
        raise click.UsageError("the prompt is empty: give a PROMPT or pipe one in")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    options = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
    request = {"messages": messages, **{k: v for k, v in options.items() if v is not None}}
    with DaemonClient.from_settings(settings_for(ctx)) as client:
        reply = (complete_reply if no_stream else stream_reply)(client, request, sys.stdout)
    click.echo(timings_line(reply), err=True)


def combined_prompt(argument: str | None) -> str:
    """The piped text and the argument, joined by one space; with no argument (or -), stdin alone."""
    if argument is None or argument == "-":
        return piped_text(wait=True)
    piped = piped_text(wait=False)
    return f"{piped} {argument}" if piped else argument


def piped_text(*, wait: bool) -> str:
    """What was piped to stdin ("" from a terminal). Without ``wait`` only text already there when `ask`
    starts: a command that has its prompt must not hang on a stdin nobody writes to (a parent's open pipe)."""
    stream = sys.stdin
    if stream is None or stream.isatty():
        return ""
    if not wait:
        try:
            ready = select.select([stream], [], [], 0)[0]
        except (OSError, ValueError):  # an in-memory stream (no file descriptor) holds all it will hold
            ready = [stream]
        if not ready:
            return ""
    return stream.read()


@cli.command()
@click.option("--terminal", is_flag=True, help="Chat in this terminal even where a window could open.")
@click.option("--window", is_flag=True, help="Open the chat window even when not started from a terminal.")
@click.option("--system", "-s", help="System prompt.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Most tokens per reply.")
@click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature (0 = greedy).")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for a loading model.")
@click.pass_context
def chat(
    ctx: click.Context,
    terminal: bool,
    window: bool,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    timeout: float,
) -> None:
    """Chat with the model: the chat window on a desktop; in a terminal (or from a pipe) lines until /exit."""
    settings = settings_for(ctx)
    if terminal and window:
        raise click.UsageError("choose one of --terminal and --window")
    if window and not has_display():
        raise errors.ConfigError(
            "no display for the chat window (DISPLAY and WAYLAND_DISPLAY are unset); use `trayllm chat --terminal`"
        )
    if window or (not terminal and has_display() and sys.stdin.isatty()):
        from trayllm.chat.app import run_window

        sys.exit(run_window(settings))
    with DaemonClient.from_settings(settings) as client:
        ensure_ready(DaemonSupervisor(settings, client), timeout)
        TerminalChat(client, system=system, options={"max_tokens": max_tokens, "temperature": temperature}).run()
