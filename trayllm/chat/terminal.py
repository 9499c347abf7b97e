"""Terminal chat: a REPL that keeps the conversation and streams each reply, plus the reply renderer `ask` shares.

Replies go to stdout as they arrive; the timings line and diagnostics go to stderr, so
``trayllm ask ... > answer.txt`` keeps only the answer. What the model or the daemon wrote is printed through
``terminal_text`` (control characters as escapes), so a reply cannot drive the terminal; the conversation
keeps the text as it came.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from trayllm import api, errors
from trayllm.chat.reply_stats import reported_stats, stats_line
from trayllm.client import DaemonClient, Done, TextDelta
from trayllm.terminal_text import for_terminal, one_line

BANNER = "trayllm chat: /reset clears the conversation, /exit or Ctrl-D quits"


@dataclass(frozen=True)
class Reply:
    """One finished reply and what it cost, as the daemon reported it and as this client saw it."""

    text: str
    finish_reason: str | None
    usage: api.Usage | None
    timings: api.Timings | None
    request_id: str | None
    first_token_s: float | None  # measured here, from sending the request
    total_s: float


def stream_reply(client: DaemonClient, request: Mapping[str, Any], out: TextIO) -> Reply:
    """Stream one reply to ``out`` as it arrives (ending with a newline) and return it."""
    start = time.monotonic()
    first: float | None = None
    parts: list[str] = []
    done: Done | None = None
    with contextlib.closing(client.stream_chat(request)) as events:
        for event in events:
            if isinstance(event, TextDelta):
                if first is None:
                    first = time.monotonic() - start
                parts.append(event.text)
                out.write(for_terminal(event.text))
                out.flush()
            else:
                done = event
    text = "".join(parts)
    out.write("\n")
    out.flush()
    return Reply(
        text,
        done.finish_reason if done else None,
        done.usage if done else None,
        done.timings if done else None,
        done.request_id if done else None,
        first,
        time.monotonic() - start,
    )


def complete_reply(client: DaemonClient, request: Mapping[str, Any], out: TextIO) -> Reply:
    """Ask for the whole reply at once (no streaming), print it and return it."""
    start = time.monotonic()
    completion = client.chat(request)
    total = time.monotonic() - start
    choice = completion.choices[0]
    out.write(for_terminal(choice.message.content) + "\n")
    out.flush()
    request_id = completion.timings.request_id if completion.timings else client.last_request_id
    return Reply(
        choice.message.content, choice.finish_reason, completion.usage, completion.timings, request_id, None, total
    )


def timings_line(reply: Reply) -> str:
    """``[first token 312 ms · 48 tokens · 15.2 tok/s · 2.31 s · req 3f2a1b9c]``, from what is known: the daemon's
    figures where it sent them, else what this client measured."""
    t = reply.timings
    stats = reported_stats(
        t, reply.usage, finish_reason=reply.finish_reason, request_id=t.request_id if t else reply.request_id
    )
    if stats.first_token_ms is None and reply.first_token_s is not None:
        stats = dataclasses.replace(stats, first_token_ms=reply.first_token_s * 1000)
    tokens = stats.completion_tokens
    if stats.tokens_per_second is None and tokens and tokens > 1 and reply.first_token_s is not None:
        decode_s = reply.total_s - reply.first_token_s
        stats = dataclasses.replace(stats, tokens_per_second=(tokens - 1) / decode_s if decode_s > 0 else None)
    line = stats_line(
        stats, total_s=t.total_ms / 1000 if t else reply.total_s, max_tokens_capped=bool(t and t.max_tokens_capped)
    )
    return one_line(f"[{line}]")


class TerminalChat:
    """A conversation in the terminal. Works on a pipe too: reads lines until EOF."""

    def __init__(
        self,
        client: DaemonClient,
        *,
        system: str | None = None,
        options: Mapping[str, Any] | None = None,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.client = client
        self.system = system
        self.options = {k: v for k, v in (options or {}).items() if v is not None}
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.messages: list[dict[str, str]] = []
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def send(self, text: str) -> Reply:
        """Stream the reply to ``text``; on success both turns join the history, on failure neither does."""
        self.messages.append({"role": "user", "content": text})
        try:
            reply = stream_reply(self.client, {"messages": self.messages, **self.options}, self.stdout)
        except BaseException:
            self.messages.pop()
            raise
        self.messages.append({"role": "assistant", "content": reply.text})
        return reply

    def _read(self, interactive: bool) -> str | None:
        if not interactive:
            line = self.stdin.readline()
            return line if line else None
        try:
            return input("> ")
        except (EOFError, KeyboardInterrupt):
            self.stderr.write("\n")
            return None

    def run(self) -> None:
        """Read, send, print, until /exit or end of input. A failed request is reported and the chat goes on."""
        interactive = self.stdin is sys.stdin and self.stdin.isatty()
        if interactive:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401  (line editing and history for input())
            self.stderr.write(BANNER + "\n")
        while (line := self._read(interactive)) is not None:
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            if text == "/reset":
                self.reset()
                self.stderr.write("[conversation cleared]\n")
                continue
            try:
                reply = self.send(text)
            except errors.RequestError as exc:
                self.stderr.write(f"trayllm: error: {one_line(exc.message)}\n")
                continue
            except KeyboardInterrupt:
                self.stderr.write("\n[stopped]\n")
                continue
            self.stderr.write(timings_line(reply) + "\n")
            self.stderr.flush()
