"""`trayllm bench MODE`: the load bench against the fake daemon; each mode takes only its own options."""

from __future__ import annotations

import json

import pytest
from cli_runner import on, run
from fake_daemon import FakeDaemon, fake_daemon_fixture  # noqa: F401

MODES = ("load", "startup", "telemetry", "slo", "shipping", "soak")


def test_bench_json(fake_daemon: FakeDaemon):
    result = on(fake_daemon, "bench", "load", "--concurrency", "1,2", "-n", "3", "--max-tokens", "8", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [lv["concurrency"] for lv in report["levels"]] == [1, 2]
    assert all(lv["requests"] == 3 and lv["errors"] == 0 for lv in report["levels"])
    assert report["model"]["name"] == "fake-model"
    assert "bench: concurrency 2: 3/3 requests, 0 errors" in result.stderr
    assert {body["max_tokens"] for body in fake_daemon.bodies} == {8}
    assert {body["temperature"] for body in fake_daemon.bodies} == {0}


def test_bench_markdown_and_bad_levels(fake_daemon: FakeDaemon):
    result = on(fake_daemon, "bench", "load", "--concurrency", "2", "-n", "2", "--markdown")
    assert result.exit_code == 0, result.stderr
    assert "| concurrency | requests | errors |" in result.stdout
    assert "fake-model (abc123) on cpu" in result.stdout
    bad = on(fake_daemon, "bench", "load", "--concurrency", "1,x")
    assert bad.exit_code == 2 and "Invalid value for '--concurrency'" in bad.stderr


def test_bare_bench_lists_the_modes():
    result = run("bench")
    listed = result.output.partition("Commands:")[2].split()
    assert all(mode in listed for mode in MODES), result.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["load", "--startup", "1"], "--startup"),
        (["startup", "1", "--json"], "--json"),
        (["slo", "10", "--concurrency", "2"], "--concurrency"),
        (["soak", "1", "--soak-interval", "5"], "--soak-interval"),
        (["telemetry", "0", "--shipping-rounds", "2"], "--shipping-rounds"),
    ],
)
def test_a_mode_refuses_another_modes_options(args: list[str], option: str):
    result = run("bench", *args)
    assert result.exit_code == 2 and f"No such option '{option}'" in result.stderr, result.stderr


def test_bench_slo_times_records_without_a_daemon():
    result = run("bench", "slo", "300")
    assert result.exit_code == 0, result.stderr
    assert "| 300 |" in result.stdout
