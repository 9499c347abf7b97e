"""The CLI end to end through click's runner, against the fake daemon; stdout and stderr checked apart."""

from __future__ import annotations

import json
import re
import signal
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_daemon import READY_STATUS, FakeDaemon, fake_daemon_fixture  # noqa: F401
from owners import NOBODY, holding, listening_as_nobody, needs_root, sleeping

from trayllm import cli, config

TIMINGS = re.compile(r"^\[first token \d+ ms · \d+ tokens · [\d.]+ tok/s · [\d.]+ s · req [0-9a-f]+…?\]$")


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli.cli, list(args), input=input, catch_exceptions=False)


def on(fake: FakeDaemon, *args: str, input: str | None = None):
    return run("--socket", str(fake.socket_path), *args, input=input)


def test_no_daemon_is_one_line_on_stderr(tmp_path: Path):
    sock = tmp_path / "none.sock"
    result = run("--socket", str(sock), "status")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (f"trayllm: error: no trayllm daemon on {sock}; "
                             "start one with `trayllm daemon` or `trayllm up`\n")


def test_bad_setting_is_one_line_on_stderr(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRAYLLM_MAX_BATCH", "abc")
    result = run("config", "show")
    assert result.exit_code == 1
    assert result.stderr == "trayllm: error: TRAYLLM_MAX_BATCH: max_batch must be a int, got 'abc'\n"


def test_usage_errors_stay_clicks():
    result = run("ask")
    assert result.exit_code == 2
    assert "Usage: " in result.stderr and "Missing argument 'PROMPT'" in result.stderr


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
    assert fake_daemon.bodies[-1]["messages"] == [{"role": "system", "content": "be brief"},
                                                  {"role": "user", "content": "from a pipe\n"}]
    assert fake_daemon.bodies[-1]["stream"] is False
    assert TIMINGS.match(result.stderr.strip()), result.stderr


def test_ask_request_error_is_one_line(fake_daemon: FakeDaemon):
    result = on(fake_daemon, "ask", "RATE")
    assert result.exit_code == 1
    assert result.stderr == "trayllm: error: slow down\n"


def test_status_human_and_json(fake_daemon: FakeDaemon):
    human = on(fake_daemon, "status")
    assert human.exit_code == 0
    lines = human.stdout.splitlines()
    assert lines[0] == "state     ready"
    assert "model     fake-model · version abc123 · context 2048" in lines
    assert "queue     1/100 waiting · 2 in flight · batch 8" in lines
    assert "uptime    1h 02m" in lines
    as_json = on(fake_daemon, "status", "--json")
    assert json.loads(as_json.stdout)["queue"]["capacity"] == 100


def test_status_shows_pause_slos_and_firing_alerts(fake_daemon: FakeDaemon):
    fake_daemon.statuses = [{**READY_STATUS, "paused": "gaming", "slo": [
        {"objective": "first_token_latency_p99", "window_s": 3600, "value": 3.5, "threshold": 3.0, "state": "breach",
         "budget_left": -0.5, "samples": 120, "unit": "s"},
        {"objective": "peak_vram", "window_s": 300, "value": None, "threshold": 0.8, "state": "insufficient",
         "budget_left": None, "samples": 0, "unit": "ratio"}],
        "alerts": [{"key": "oom", "state": "firing", "severity": "critical", "message": "GPU out of memory",
                    "at": 1.0}]}]
    out = on(fake_daemon, "status").stdout
    assert "paused    gaming (`trayllm resume` to serve again)" in out
    assert "slo       first_token_latency_p99 3.5 s (limit 3 s) breach" in out
    assert "peak_vram" not in out  # nothing to say yet
    assert "alert     critical: GPU out of memory" in out


def test_slo_offline_needs_a_file_and_a_readable_time(tmp_path: Path):
    missing = run("slo", "--from", str(tmp_path / "none.jsonl"))
    assert missing.exit_code == 1 and "no record file at" in missing.stderr
    (tmp_path / "r.jsonl").write_text("")
    bad_time = run("slo", "--from", str(tmp_path / "r.jsonl"), "--at", "yesterday")
    assert bad_time.exit_code == 1 and "--at wants Unix seconds or an ISO 8601 time" in bad_time.stderr
    live_at = run("slo", "--at", "0")
    assert live_at.exit_code == 1 and "--at needs --from FILE" in live_at.stderr
    empty = run("slo", "--from", str(tmp_path / "r.jsonl"), "--at", "2026-01-01T00:00:00Z")
    assert empty.exit_code == 0 and empty.stdout.count("insufficient") == 3


def test_status_shows_vram_and_load_progress(fake_daemon: FakeDaemon):
    fake_daemon.statuses = [{**READY_STATUS, "state": "loading", "load_progress": "converting 40%",
                             "vram": {"used_bytes": 2 * 1024**3, "total_bytes": 8 * 1024**3}}]
    out = on(fake_daemon, "status").stdout
    assert "state     loading (converting 40%)" in out
    assert "vram      2.00 / 8.00 GiB (25%)" in out


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


def test_up_with_a_running_daemon_waits_for_it_then_chats(fake_daemon: FakeDaemon):
    fake_daemon.statuses = [{**READY_STATUS, "state": "loading", "model": None, "load_progress": "converting 40%"},
                            READY_STATUS]
    result = on(fake_daemon, "up", input="hi\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Echo: hi\n"
    assert "trayllm: daemon loading: converting 40%\n" in result.stderr
    assert "ready: fake-model on cpu" in result.stderr
    assert "started the daemon" not in result.stderr


def test_up_reports_a_daemon_that_dies_with_its_log(monkeypatch: pytest.MonkeyPatch):
    script = "import sys; print('loading...'); print('boom: no model at /x.gguf', flush=True); sys.exit(3)"
    monkeypatch.setattr(cli, "daemon_command", lambda settings: [sys.executable, "-c", script])
    log = config.load_settings().state_path / "daemon.log"
    log.parent.mkdir(parents=True)
    log.write_text("an old run\n")
    result = run("up", "--timeout", "30")
    assert result.exit_code == 1
    assert "trayllm: started the daemon" in result.stderr
    assert "trayllm: error: the daemon exited with status 3" in result.stderr
    assert "    boom: no model at /x.gguf" in result.stderr
    assert "an old run" not in result.stderr  # only this run's lines
    assert "an old run" in log.read_text()


def test_down_sends_sigterm_to_the_status_pid_holding_the_daemons_lock(fake_daemon: FakeDaemon):
    with holding(fake_daemon.socket_path.with_name("daemon.sock.lock")) as daemon:
        fake_daemon.statuses = [{**READY_STATUS, "pid": daemon.pid}]
        result = on(fake_daemon, "down", "--timeout", "10")
        assert result.exit_code == 0, result.stderr
        assert daemon.wait(10) == -signal.SIGTERM
    assert result.stderr == f"trayllm: daemon stopped (pid {daemon.pid})\n"


@pytest.mark.parametrize("owner", [pytest.param(NOBODY, marks=needs_root), None], ids=["stranger", "mine"])
def test_down_signals_no_status_pid_that_does_not_hold_the_daemons_lock(fake_daemon: FakeDaemon, owner: int | None):
    with sleeping(owner) as victim:
        fake_daemon.statuses = [{**READY_STATUS, "pid": victim.pid}]
        result = on(fake_daemon, "down", "--timeout", "10")
        assert victim.poll() is None
    assert result.exit_code == 1
    reason = (f"runs as uid {NOBODY}, not you" if owner else
              f"does not hold {fake_daemon.socket_path}.lock, so it is not the process that file is for")
    assert result.stderr == f"trayllm: error: pid {victim.pid} {reason}: trayllm does not signal it\n"


@needs_root
def test_ask_sends_no_prompt_to_a_daemon_of_another_user(tmp_path: Path):
    sock = tmp_path / "daemon.sock"
    with listening_as_nobody(sock) as received:
        result = run("--socket", str(sock), "ask", "my secret")
        assert received() == b""
    assert result.exit_code == 1
    assert result.stderr == (f"trayllm: error: the daemon on {sock} runs as uid {NOBODY}, not you: trayllm sent it "
                             "nothing; choose another place with XDG_RUNTIME_DIR or TRAYLLM_SOCKET\n")


def test_down_without_a_daemon_is_fine(tmp_path: Path):
    result = run("--socket", str(tmp_path / "none.sock"), "down")
    assert result.exit_code == 0
    assert "no daemon running" in result.stderr


def test_bench_json(fake_daemon: FakeDaemon):
    result = on(fake_daemon, "bench", "--concurrency", "1,2", "-n", "3", "--max-tokens", "8", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [lv["concurrency"] for lv in report["levels"]] == [1, 2]
    assert all(lv["requests"] == 3 and lv["errors"] == 0 for lv in report["levels"])
    assert report["model"]["name"] == "fake-model"
    assert "bench: concurrency 2: 3/3 requests, 0 errors" in result.stderr
    assert {body["max_tokens"] for body in fake_daemon.bodies} == {8}
    assert {body["temperature"] for body in fake_daemon.bodies} == {0}


def test_bench_markdown_and_bad_levels(fake_daemon: FakeDaemon):
    result = on(fake_daemon, "bench", "--concurrency", "2", "-n", "2", "--markdown")
    assert result.exit_code == 0, result.stderr
    assert "| concurrency | requests | errors |" in result.stdout
    assert "fake-model (abc123) on cpu" in result.stdout
    bad = on(fake_daemon, "bench", "--concurrency", "1,x")
    assert bad.exit_code == 2 and "Invalid value for '--concurrency'" in bad.stderr


def test_config_show_and_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("TRAYLLM_MAX_BATCH", "3")
    rows = json.loads(run("config", "show", "--json").stdout)
    assert next(r for r in rows if r["name"] == "max_batch")["value"] == 3
    text = run("config", "show").stdout
    assert "max_batch = 3\n" in text and "(default 8)" in text
    assert 'model = ""\n' in text
    monkeypatch.setenv("TRAYLLM_CONFIG", str(tmp_path / "c.toml"))
    path = run("config", "path")
    assert path.stdout == f"{tmp_path / 'c.toml'}\n"
    assert "does not exist" in path.stderr


def test_daemon_command_passes_flags_to_run_daemon(monkeypatch: pytest.MonkeyPatch):
    """`trayllm daemon` only builds Settings and hands them to trayllm.daemon.server.run_daemon."""
    seen = []
    fake_server = types.ModuleType("trayllm.daemon.server")
    fake_server.run_daemon = seen.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trayllm.daemon.server", fake_server)
    result = run("daemon", "--device", "cpu", "--max-batch", "2", "--no-warmup", "--listen", "127.0.0.1:8765")
    assert result.exit_code == 0, result.stderr
    (settings,) = seen
    assert (settings.device, settings.max_batch, settings.warmup, settings.listen) == (
        "cpu", 2, False, "127.0.0.1:8765")
