"""What reaches a terminal: text the daemon or the model wrote (a pause reason, a model name, an alert, a reply)
never carries a control sequence or a forged line onto it, in `trayllm status`, `events`, `ask` and the terminal
chat; the sanitizer itself, including for a reply whose escape sequence is split across streamed pieces."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_daemon import READY_STATUS, FakeDaemon, fake_daemon_fixture  # noqa: F401
from hypothesis import given
from hypothesis import strategies as st

from trayllm import cli
from trayllm.terminal_text import for_terminal, one_line

REASON = "gaming\n\x1b]0;pwned\x07\x1b[2J\r\x9b31m"  # a forged line, a window title, clear screen, CR, C1 CSI
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # anything but a newline or a tab


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli.cli, list(args), input=input, catch_exceptions=False)


def on(fake: FakeDaemon, *args: str, input: str | None = None):
    return run("--socket", str(fake.socket_path), *args, input=input)


def test_controls_become_visible_escapes_and_text_stays():
    assert for_terminal(REASON) == "gaming\n\\x1b]0;pwned\\x07\\x1b[2J\\x0d\\x9b31m"
    assert for_terminal("line one\n\tindented · ünïcode ✓") == "line one\n\tindented · ünïcode ✓"
    assert one_line(REASON) == "gaming \\x1b]0;pwned\\x07\\x1b[2J \\x9b31m"
    assert one_line("a\r\nb\u2028c\x85d\te") == "a b c d e"


@given(st.text(alphabet=st.sampled_from("ab\x1b\x9b\x07[]0;\n\r\t")), st.lists(st.integers(0, 40)))
def test_a_reply_split_anywhere_prints_no_control_character(text: str, cuts: list[int]):
    bounds = [0, *sorted(c for c in cuts if c < len(text)), len(text)]
    printed = "".join(for_terminal(text[a:b]) for a, b in itertools.pairwise(bounds))
    assert not RAW_CONTROL.search(printed)
    assert printed == for_terminal(text)  # piece by piece prints what the whole would


def test_status_prints_daemon_text_as_one_line_per_field_without_escapes_or_passwords(fake_daemon: FakeDaemon):
    fake_daemon.statuses = [
        {
            **READY_STATUS,
            "paused": REASON,
            "error": "boom\x1b[8m",
            "model": {**READY_STATUS["model"], "name": "evil\x1b]8;;file:///\x07model"},
            "alerts": [
                {"key": "oom", "state": "firing", "severity": "critical", "message": "GPU\nstate     ready", "at": 1.0}
            ],
            "shipping": {
                "state": "backing off",
                "last_error": "cannot reach https://elastic:hunter2@es.example:9200 (refused)",
            },
        }
    ]
    result = on(fake_daemon, "status")
    assert result.exit_code == 0, result.stderr
    assert not RAW_CONTROL.search(result.stdout)
    lines = result.stdout.splitlines()
    assert "paused    gaming \\x1b]0;pwned\\x07\\x1b[2J \\x9b31m (`trayllm resume` to serve again)" in lines
    assert "error     boom\\x1b[8m" in lines
    assert "alert     critical: GPU state     ready" in lines  # no forged "state" row
    assert [line for line in lines if line.startswith("state ")] == ["state     ready"]
    assert any(line.startswith("model     evil\\x1b]8;;file:///\\x07model") for line in lines)
    assert "last error: cannot reach https://elastic:***@es.example:9200 (refused)" in result.stdout
    assert "hunter2" not in result.stdout


def test_ask_prints_a_streamed_reply_without_escapes_even_split_across_pieces(fake_daemon: FakeDaemon):
    # the fake daemon streams one word per piece: ESC arrives alone, its sequence in the next piece
    result = on(fake_daemon, "ask", "\x1b ]0;pwned\x07 \x9b 2J")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Echo: \\x1b ]0;pwned\\x07 \\x9b 2J\n"
    whole = on(fake_daemon, "ask", "--no-stream", "\x1b]0;pwned\x07")
    assert whole.stdout == "Echo: \\x1b]0;pwned\\x07\n"


def test_the_terminal_chat_prints_replies_without_escapes_and_keeps_them_as_sent(fake_daemon: FakeDaemon):
    result = on(fake_daemon, "chat", "--terminal", input="\x1b[2J\nagain\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Echo: \\x1b[2J\nEcho: again\n"
    # the model sees its own reply as it wrote it: only the terminal gets the escapes
    assert fake_daemon.bodies[-1]["messages"][1] == {"role": "assistant", "content": "Echo: \x1b[2J"}


@pytest.mark.slow
def test_a_pause_reason_reaches_status_events_and_errors_as_one_harmless_line(daemon):
    socket = str(daemon.socket)
    assert run("--socket", socket, "pause", REASON).exit_code == 0
    try:
        status = run("--socket", socket, "status")
        refused = run("--socket", socket, "ask", "hi")
        env = {**os.environ, **daemon.env, "PYTHONUNBUFFERED": "1"}
        with subprocess.Popen(
            [sys.executable, "-m", "trayllm", "--socket", socket, "events"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as events:
            hello = events.stdout.readline().decode()  # the snapshot a new subscriber gets first
            events.terminate()
    finally:
        assert run("--socket", socket, "resume").exit_code == 0
    shown = "gaming \\x1b]0;pwned\\x07\\x1b[2J \\x9b31m"
    assert f"paused    {shown} (`trayllm resume` to serve again)" in status.stdout.splitlines()
    assert not RAW_CONTROL.search(status.stdout)
    assert " hello " in hello and f"paused={shown}" in hello and not RAW_CONTROL.search(hello)
    assert refused.exit_code == 1 and shown in refused.stderr
    assert refused.stderr.count("\n") == 1 and not RAW_CONTROL.search(refused.stderr)


def test_the_error_line_escapes_what_a_message_carries(tmp_path: Path):
    sock = tmp_path / "\x1b[31mred.sock"  # a path is text from elsewhere too
    result = run("--socket", str(sock), "status")
    assert result.exit_code == 1
    assert "\x1b" not in result.stderr and "\\x1b[31mred.sock" in result.stderr
