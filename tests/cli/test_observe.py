"""`trayllm status` and `trayllm slo` against the fake daemon or a record file: what they print, when they refuse."""

from __future__ import annotations

import json
from pathlib import Path

from cli_runner import on, run
from fake_daemon import READY_STATUS, FakeDaemon, fake_daemon_fixture  # noqa: F401
from slo_records import record


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


def test_status_names_the_engine_local_or_remote(fake_daemon: FakeDaemon):
    assert "engine    local" in on(fake_daemon, "status").stdout.splitlines()
    upstream = {"engine": "gpu-box", "engine_url": "http://gpu:8000/v1", "version": "Qwen/Qwen2.5-7B-Instruct"}
    fake_daemon.statuses = [{**READY_STATUS, "model": {**READY_STATUS["model"], **upstream}}]
    lines = on(fake_daemon, "status").stdout.splitlines()
    assert "engine    gpu-box · upstream model Qwen/Qwen2.5-7B-Instruct at http://gpu:8000/v1" in lines
    assert not any(line.startswith("runs on") for line in lines)


def test_status_shows_pause_slos_and_firing_alerts(fake_daemon: FakeDaemon):
    fake_daemon.statuses = [
        {
            **READY_STATUS,
            "paused": "gaming",
            "slo": [
                {
                    "objective": "first_token_latency_p99",
                    "window_s": 3600,
                    "value": 3.5,
                    "threshold": 3.0,
                    "state": "breach",
                    "budget_left": -0.5,
                    "samples": 120,
                    "unit": "s",
                },
                {
                    "objective": "peak_vram",
                    "window_s": 300,
                    "value": None,
                    "threshold": 0.8,
                    "state": "insufficient",
                    "budget_left": None,
                    "samples": 0,
                    "unit": "ratio",
                },
            ],
            "alerts": [
                {"key": "oom", "state": "firing", "severity": "critical", "message": "GPU out of memory", "at": 1.0}
            ],
        }
    ]
    out = on(fake_daemon, "status").stdout
    assert "paused    gaming (`trayllm resume` to serve again)" in out
    assert "slo       first_token_latency_p99 3.5 s (limit 3 s) breach" in out
    assert "peak_vram" not in out  # nothing to say yet
    assert "alert     critical: GPU out of memory" in out


def test_status_shows_vram_and_load_progress(fake_daemon: FakeDaemon):
    fake_daemon.statuses = [
        {
            **READY_STATUS,
            "state": "loading",
            "load_progress": "converting 40%",
            "vram": {"used_bytes": 2 * 1024**3, "total_bytes": 8 * 1024**3},
        }
    ]
    out = on(fake_daemon, "status").stdout
    assert "state     loading (converting 40%)" in out
    assert "vram      2.00 / 8.00 GiB (25%)" in out


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


def test_slo_from_a_file_and_from_elastic_is_a_usage_error(tmp_path: Path):
    (tmp_path / "r.jsonl").write_text("")
    both = run("slo", "--from", str(tmp_path / "r.jsonl"), "--from-elastic")
    assert both.exit_code == 2 and "choose one of --from FILE and --from-elastic" in both.stderr


def test_slo_check_exits_3_while_an_objective_is_breached_and_0_when_met(tmp_path: Path):
    records = tmp_path / "requests.jsonl"
    at = "2026-01-01T00:10:00Z"
    healthy = [record(i, ttft_s=0.2) for i in range(60)]
    records.write_text("".join(json.dumps(doc) + "\n" for doc in healthy))
    met = run("slo", "--from", str(records), "--at", at, "--check")
    assert met.exit_code == 0, met.stderr
    slow = [record(60 + i, ttft_s=9.0) for i in range(60)]  # first tokens far past the 3 s P99 objective
    records.write_text("".join(json.dumps(doc) + "\n" for doc in healthy + slow))
    breached = run("slo", "--from", str(records), "--at", at, "--check")
    assert breached.exit_code == 3
    assert breached.stderr.strip() == "trayllm: objective breached: first_token_latency_p99"
    assert "breach" in breached.stdout  # the report is printed all the same
    assert run("slo", "--from", str(records), "--at", at).exit_code == 0  # without --check: 0, as before
