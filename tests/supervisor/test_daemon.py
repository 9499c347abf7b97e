"""DaemonSupervisor over the fake runner (tests/fake_runner.py): start, wait-ready, stop, restart, and each way a
start fails, without a process. tests/supervisor/test_up_down.py runs the same code on real daemons."""

from __future__ import annotations

import pytest
from fake_runner import FakeClient, FakeProcess, FakeRunner

from trayllm import config, errors
from trayllm.supervisor.daemon import DaemonSupervisor, StartFailed


def supervising(runner: FakeRunner) -> DaemonSupervisor:
    return DaemonSupervisor(config.load_settings(), FakeClient(runner), runner=runner, terminate=runner.terminate)


def test_bring_up_starts_a_daemon_says_where_and_wait_ready_follows_its_loading() -> None:
    runner = FakeRunner(FakeProcess(101, ["silent", "silent", "loading", "loading", "ready"]))
    supervisor = supervising(runner)
    said: list[str] = []
    supervisor.bring_up(5, said.append)
    assert said == ["started the daemon (fake pid 101)"]
    progress: list[str] = []
    status = supervisor.wait_ready(5, lambda s: progress.append(s.state))
    assert (status.state, status.pid) == ("ready", 101)
    assert progress == ["loading", "ready"]
    assert [p.pid for p in runner.started] == [101]


def test_bring_up_leaves_a_daemon_that_answers_alone() -> None:
    runner = FakeRunner()
    runner.already_running(FakeProcess(7, ["ready"]))
    supervisor = supervising(runner)
    said: list[str] = []
    supervisor.bring_up(5, said.append)
    assert said == [f"daemon already running on {config.load_settings().socket_path}"]
    assert supervisor.started is None and supervisor.wait_ready(5).pid == 7


def test_a_runner_that_fails_is_its_one_line_and_nothing_is_watched() -> None:
    supervisor = supervising(FakeRunner(errors.TrayllmError("could not start the daemon's unit: no manager")))
    said: list[str] = []
    with pytest.raises(errors.TrayllmError, match=r"^could not start the daemon's unit: no manager$"):
        supervisor.bring_up(5, said.append)
    assert said == [] and supervisor.started is None


def test_a_daemon_that_never_answers_is_reported_with_where_it_is() -> None:
    supervisor = supervising(FakeRunner(FakeProcess(101, ["silent"])))
    with pytest.raises(StartFailed, match=r"^the daemon \(fake pid 101\) did not answer within 0.3 s$"):
        supervisor.bring_up(0.3)


def test_a_daemon_that_never_gets_ready_is_not_ready_after_the_timeout() -> None:
    supervisor = supervising(FakeRunner(FakeProcess(101, ["loading"])))
    supervisor.bring_up(5)
    with pytest.raises(errors.NotReady, match=r"^the daemon is still loading after 0.5 s$"):
        supervisor.wait_ready(0.5)


@pytest.mark.parametrize(
    "steps", [["silent", "exit"], ["loading", "loading", "exit"]], ids=["before-it-answers", "while-loading"]
)
def test_a_daemon_that_exits_early_is_reported_with_its_log(steps: list[str]) -> None:
    """Whether it dies before it answers or while it loads, the error is its exit and its log, not a timeout."""
    process = FakeProcess(101, steps)
    supervisor = supervising(FakeRunner(process))
    with pytest.raises(StartFailed) as failed:
        supervisor.bring_up(30)
        supervisor.wait_ready(30)
    assert failed.value.message == "the daemon exited with status 3; last lines of fake-101.log:\n    boom"
    assert process.seen[-1] == "exit"


def test_a_model_that_fails_to_load_is_the_daemons_own_error() -> None:
    supervisor = supervising(FakeRunner(FakeProcess(101, ["loading", "failed"])))
    supervisor.bring_up(5)
    with pytest.raises(errors.ModelLoadError, match=r"^no model at /x.gguf$"):
        supervisor.wait_ready(5)


def test_wait_ready_with_no_daemon_at_all_says_none_answers() -> None:
    with pytest.raises(errors.DaemonNotRunning, match=r"^no trayllm daemon is running on /nonexistent/fake.sock$"):
        supervising(FakeRunner()).wait_ready(5)


def test_stop_ends_the_daemon_that_answers_and_returns_its_pid() -> None:
    runner = FakeRunner()
    daemon = runner.already_running(FakeProcess(7, ["ready"]))
    supervisor = supervising(runner)
    assert supervisor.stop(12.5) == 7
    assert not daemon.alive and daemon.terminated_with == 12.5
    assert supervisor.stop(12.5) is None  # nothing answers any more


def test_restart_stops_the_old_daemon_before_it_starts_the_new_one_and_waits_until_ready() -> None:
    runner = FakeRunner(FakeProcess(102, ["silent", "loading", "ready"]))
    old = runner.already_running(FakeProcess(7, ["ready"]))
    said: list[str] = []
    status = supervising(runner).restart(5, said.append)
    assert said == ["daemon stopped (pid 7)", "started the daemon (fake pid 102)"]
    assert not old.alive and status.pid == 102 and status.state == "ready"


def test_restart_with_no_daemon_running_just_starts_one() -> None:
    runner = FakeRunner(FakeProcess(102, ["ready"]))
    said: list[str] = []
    assert supervising(runner).restart(5, said.append).pid == 102
    assert said == ["started the daemon (fake pid 102)"]
