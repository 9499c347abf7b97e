"""The soak bench: its /proc reading, its trend arithmetic, and a short run against the fake daemon."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fake_daemon import FakeDaemon, fake_daemon_fixture  # noqa: F401

from trayllm.bench.soak import ProcessSample, SoakSample, read_process, run_soak, to_markdown, trend
from trayllm.client import DaemonClient


def test_read_process_sees_an_fd_this_process_opens() -> None:
    before = read_process(os.getpid())
    assert before.rss_mib > 1 and before.threads >= 1
    with open(__file__) as _:
        assert read_process(os.getpid()).open_fds == before.open_fds + 1


def test_read_process_of_a_gone_pid_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        read_process(999_999_999)


def test_trend_finds_a_steady_climb_and_ignores_the_warm_up() -> None:
    times = [0, 60, 120, 180, 240, 300]
    leaking = [500, 100, 101, 102, 103, 104]  # a warm-up sample, then +1 per minute
    t = trend(times, leaking)
    assert t.slope_per_hour == pytest.approx(60)
    assert t.first_to_last_third == pytest.approx(103.5 - 300)
    flat = trend(times, [500, 100, 100, 100, 100, 100])
    assert flat.slope_per_hour == 0


def test_trend_needs_enough_points() -> None:
    assert trend([0, 60, 120], [1.0, 2.0, None]).slope_per_hour is None
    assert trend([], []).first_to_last_third is None


def test_a_short_soak_against_the_fake_daemon(fake_daemon: FakeDaemon) -> None:
    seen: list[SoakSample] = []
    samples = run_soak(
        lambda: DaemonClient(socket_path=fake_daemon.socket_path),
        os.getpid(),
        duration_s=1.5,
        concurrency=2,
        max_tokens=8,
        interval_s=0.5,
        on_sample=seen.append,
    )
    assert seen == samples and len(samples) == 3
    assert [s.elapsed_s for s in samples] == sorted(s.elapsed_s for s in samples)
    assert sum(s.requests for s in samples) > 0 and all(s.errors == 0 for s in samples)
    assert all(s.process.open_fds > 0 for s in samples)
    assert fake_daemon.max_in_flight <= 2


def test_markdown_has_a_row_per_sample_and_a_trend_per_series() -> None:
    samples = [SoakSample(60.0 * i, 10, 0, 100.0, 200.0 + i, ProcessSample(300.0 + i, 40, 12)) for i in range(1, 6)]
    text = to_markdown(samples, concurrency=2, max_tokens=64, command="trayllm bench --soak 5")
    assert [line.split(" | ")[0] for line in text.splitlines() if line[:3] in ("| 1", "| 2", "| 3", "| 4", "| 5")] == [
        "| 1.0",
        "| 2.0",
        "| 3.0",
        "| 4.0",
        "| 5.0",
    ]
    assert "| RSS (MiB) | 60 | 4 |" in text  # 5 samples: thirds of one, 305 - 301
    assert "50 requests, 0 errors." in text
