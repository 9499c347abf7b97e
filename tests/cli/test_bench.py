"""`trayllm bench MODE`: the load bench against the fake daemon; each mode takes only its own options."""

from __future__ import annotations

import json

import pytest
from cli_runner import on, run
from fake_daemon import FakeDaemon, fake_daemon_fixture  # noqa: F401
from openai_standin import serve_standin

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


def test_bench_url_drives_an_openai_server_after_one_warm_up(tmp_path):
    key = tmp_path / "key"
    key.write_text("sk-peer\n")
    with serve_standin() as peer:
        result = run(
            "bench", "load", "--url", peer.url, "--api-key-file", str(key), "--concurrency", "1,2", "-n", "2", "--json"
        )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["server"] == f"{peer.url}, model peer-model" and report["model"] is None
    assert [(lv["concurrency"], lv["requests"], lv["errors"]) for lv in report["levels"]] == [(1, 2, 0), (2, 2, 0)]
    assert [body["max_tokens"] for body in peer.bodies] == [2, 64, 64, 64, 64]  # the warm-up, then the levels
    assert {body["model"] for body in peer.bodies} == {"peer-model"}
    assert {headers["authorization"] for _, headers, _ in peer.requests} == {"Bearer sk-peer"}


def test_bench_url_fails_fast_when_the_warm_up_fails():
    with serve_standin(status=503) as peer:
        result = run("bench", "load", "--url", peer.url, "--timeout", "0")
    assert result.exit_code == 1
    assert f"the warm-up request to {peer.url} failed: ServiceUnavailable: engine busy" in result.stderr
    assert len(peer.bodies) == 1


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
