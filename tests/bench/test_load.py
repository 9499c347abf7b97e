"""Bench arithmetic (nearest-rank percentiles, per-stream and aggregate speed) and a run against the fake daemon."""

from __future__ import annotations

import pytest
from fake_daemon import FakeDaemon, fake_daemon_fixture  # noqa: F401

from trayllm.bench import load, report
from trayllm.client import DaemonClient

WIKI = [15, 20, 35, 40, 50]  # the worked example for the nearest-rank method


@pytest.mark.parametrize(
    ("p", "expected"), [(0, 15), (5, 15), (20, 15), (30, 20), (40, 20), (50, 35), (99, 50), (100, 50)]
)
def test_percentile_nearest_rank(p: float, expected: float):
    assert load.percentile(WIKI, p) == expected


def test_percentile_edges():
    assert load.percentile([], 50) is None
    assert load.percentile([7.0], 99) == 7.0
    assert load.percentile([3, 1, 2], 50) == 2  # sorts first
    assert load.percentile(list(range(1, 101)), 99) == 99
    assert load.percentile(list(range(1, 1001)), 99.9) == 999
    with pytest.raises(ValueError, match="0..100"):
        load.percentile([1], 101)


def test_request_decode_speed_excludes_the_first_token():
    assert load.RequestResult(first_token_s=0.5, total_s=1.5, completion_tokens=11).decode_tokens_per_second == 10.0
    assert load.RequestResult(first_token_s=0.5, total_s=0.5, completion_tokens=1).decode_tokens_per_second is None
    assert load.RequestResult(None, 0.1, 0, error="QueueFull: full").decode_tokens_per_second is None


def test_summarise_level():
    results = [
        load.RequestResult(first_token_s=0.1, total_s=1.1, completion_tokens=11),  # 10 tok/s per stream
        load.RequestResult(first_token_s=0.3, total_s=0.8, completion_tokens=11),  # 20 tok/s per stream
        load.RequestResult(first_token_s=None, total_s=0.01, completion_tokens=0, error="QueueFull: full"),
    ]
    level = load.summarise(2, results, wall_s=2.0)
    assert (level.requests, level.errors, level.completion_tokens) == (3, 1, 22)
    assert (level.first_token_p50_ms, level.first_token_p99_ms) == (100.0, 300.0)
    assert level.decode_tokens_per_second_per_stream == 15.0
    assert level.aggregate_decode_tokens_per_second == 11.0
    assert level.error_examples == ("QueueFull: full",)


def test_run_level_against_the_fake_daemon(fake_daemon: FakeDaemon):
    made: list[DaemonClient] = []

    def make_client() -> DaemonClient:
        made.append(DaemonClient(socket_path=fake_daemon.socket_path))
        return made[-1]

    seen: list[load.RequestResult] = []
    level = load.run_level(make_client, concurrency=3, requests=7, max_tokens=16, on_result=seen.append)
    assert (level.concurrency, level.requests, level.errors) == (3, 7, 0)
    assert len(seen) == 7 and all(r.first_token_s is not None for r in seen)
    assert 1 <= len(made) <= 3  # one client per worker thread, never shared
    assert fake_daemon.max_in_flight <= 3
    prompts = [body["messages"][0]["content"] for body in fake_daemon.bodies]
    assert sorted(set(prompts)) == sorted(load.PROMPTS[:7])
    # completion tokens come from the usage the daemon reports (one per word of "Echo: <prompt>")
    assert level.completion_tokens == sum(len(f"Echo: {p}".split(" ")) for p in prompts)


def test_markdown_report_names_the_machine_and_command():
    level = load.summarise(1, [load.RequestResult(0.2, 1.2, 11)], wall_s=1.2)
    text = report.to_markdown([level], max_tokens=64, status=None, command="trayllm bench --markdown")
    assert f"{report.machine()['cpu_count']} CPUs" in text
    assert "- Command: `trayllm bench --markdown`" in text
    assert "| 1 | 1 | 0 | 200.0 | 200.0 | 10.0 | 9.2 | 1.20 |" in text
    assert report.command_line(["bench", "--concurrency", "1, 8"]) == "trayllm bench --concurrency '1, 8'"
    assert "- Server:" not in text
    peer = report.to_markdown([level], max_tokens=64, status=None, command="c", server="http://h/v1, model m")
    assert "- Server: http://h/v1, model m" in peer
