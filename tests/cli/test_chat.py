"""`trayllm ask` and `trayllm chat --terminal` against the fake daemon: replies on stdout, timings on stderr."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from cli_runner import on, run
from fake_daemon import FakeDaemon, fake_daemon_fixture  # noqa: F401
from owners import NOBODY, listening_as_nobody, needs_root

TIMINGS = re.compile(r"^\[first token \d+ ms · \d+ tokens · [\d.]+ tok/s · [\d.]+ s · req [0-9a-f]+…?\]$")


def test_ask_streams_the_reply_to_stdout_and_timings_to_stderr(fake_daemon: FakeDaemon):
    result = on(fake_daemon, "ask", "hello world", "--max-tokens", "20", "--temperature", "0", "--seed", "3")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Echo: hello world\n"
    assert TIMINGS.match(result.stderr.strip()), result.stderr
    assert "first token 312 ms · 3 tokens · 15.2 tok/s · 2.31 s" in result.stderr
    sent = fake_daemon.bodies[-1]
    assert (sent["max_tokens"], sent["temperature"], sent["seed"], sent["stream"]) == (20, 0, 3, True)


def test_ask_reads_stdin_and_sends_the_system_prompt(fake_daemon: FakeDaemon):
    result = on(fake_daemon, "ask", "-", "--system", "be brief", "--no-stream", input="from a pipe\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Echo: from a pipe\n\n"
    assert fake_daemon.bodies[-1]["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "from a pipe\n"},
    ]
    assert fake_daemon.bodies[-1]["stream"] is False
    assert TIMINGS.match(result.stderr.strip()), result.stderr


def test_ask_request_error_is_one_line(fake_daemon: FakeDaemon):
    result = on(fake_daemon, "ask", "RATE")
    assert result.exit_code == 1
    assert result.stderr == "trayllm: error: slow down\n"


@needs_root
def test_ask_sends_no_prompt_to_a_daemon_of_another_user(tmp_path: Path):
    sock = tmp_path / "daemon.sock"
    with listening_as_nobody(sock) as received:
        result = run("--socket", str(sock), "ask", "my secret")
        assert received() == b""
    assert result.exit_code == 1
    assert result.stderr == (
        f"trayllm: error: the daemon on {sock} runs as uid {NOBODY}, not you: trayllm sent it "
        "nothing; choose another place with XDG_RUNTIME_DIR or TRAYLLM_SOCKET\n"
    )


def test_terminal_chat_keeps_history_and_resets(fake_daemon: FakeDaemon):
    result = on(fake_daemon, "chat", "--terminal", input="first\n\nsecond\n/reset\nthird\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Echo: first\nEcho: second\nEcho: third\n"
    assert [len(body["messages"]) for body in fake_daemon.bodies] == [1, 3, 1]
    assert fake_daemon.bodies[1]["messages"][1] == {"role": "assistant", "content": "Echo: first"}
    assert sum(bool(TIMINGS.match(line)) for line in result.stderr.splitlines()) == 3
    assert "[conversation cleared]" in result.stderr


def test_terminal_chat_survives_a_failed_request(fake_daemon: FakeDaemon):
    result = on(fake_daemon, "chat", input="RATE\nhello\n/exit\nnever sent\n")
    assert result.exit_code == 0
    assert "trayllm: error: slow down" in result.stderr
    assert result.stdout == "Echo: hello\n"
    assert fake_daemon.bodies[-1]["messages"] == [{"role": "user", "content": "hello"}]


def test_ask_puts_piped_text_before_the_prompt_as_llm_does(fake_daemon: FakeDaemon):
    result = on(fake_daemon, "ask", "summarise this", "--no-stream", input="the diff\n")
    assert result.exit_code == 0, result.stderr
    assert fake_daemon.bodies[-1]["messages"] == [{"role": "user", "content": "the diff\n summarise this"}]


def test_ask_with_no_prompt_reads_the_pipe_and_with_neither_names_the_fix(fake_daemon: FakeDaemon):
    assert on(fake_daemon, "ask", "--no-stream", input="piped only").exit_code == 0
    assert fake_daemon.bodies[-1]["messages"] == [{"role": "user", "content": "piped only"}]
    empty = on(fake_daemon, "ask", input="")
    assert empty.exit_code == 2 and "give a PROMPT or pipe one in" in empty.stderr


def test_ask_through_a_real_pipe_and_not_hanging_on_a_silent_one(fake_daemon: FakeDaemon):
    command = [sys.executable, "-m", "trayllm", "--socket", str(fake_daemon.socket_path), "ask", "--no-stream"]
    piped = subprocess.run(
        [*command, "and the argument"], input="piped", capture_output=True, text=True, timeout=60, check=True
    )
    assert fake_daemon.bodies[-1]["messages"] == [{"role": "user", "content": "piped and the argument"}]
    assert piped.stdout == "Echo: piped and the argument\n"
    read_end, write_end = os.pipe()  # a stdin that stays open and silent, as a parent's pipe can
    try:
        silent = subprocess.run([*command, "alone"], stdin=read_end, capture_output=True, text=True, timeout=60)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert silent.returncode == 0, silent.stderr
    assert fake_daemon.bodies[-1]["messages"] == [{"role": "user", "content": "alone"}]
