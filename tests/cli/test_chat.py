"""`trayllm ask` and `trayllm chat --terminal` against the fake daemon: replies on stdout, timings on stderr."""

from __future__ import annotations

import re
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
