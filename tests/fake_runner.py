"""A fake runner for DaemonSupervisor: daemons with no process behind them, scripted observation by observation.

``FakeRunner(plan, ...)`` starts the next planned ``FakeProcess`` (or raises the planned TrayllmError), and
``FakeClient(runner)`` is a DaemonClient whose ``health()`` and ``status()`` read the live fake; everything
else, ``wait_ready`` included, is the real client's code. Each ``status()`` moves the fake one step along its
``steps`` (the last one repeats), and so does each ``health()`` while it does not answer:

- ``"silent"``: alive but not answering yet; ``"loading"``, ``"ready"``, ``"failed"``: what its status says;
- ``"exit"``: it exits (with ``failure()`` as its reason) and answers nothing from then on.

``runner.terminate`` is the supervisor's stand-in for SIGTERM-and-wait: it ends the fake with that pid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fake_daemon import READY_STATUS

from trayllm import api_status, errors
from trayllm.client import DaemonClient


@dataclass
class FakeProcess:
    pid: int
    steps: list[str]
    alive: bool = True
    terminated_with: float | None = None  # the timeout terminate was given
    seen: list[str] = field(default_factory=list)

    def step(self) -> str:
        """The next step of the script (the last one repeats); "exit" ends the process."""
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if step == "exit":
            self.alive = False
        self.seen.append(step)
        return step

    def where(self) -> str:
        return f"fake pid {self.pid}"

    def running(self) -> bool:
        return self.alive

    def failure(self) -> str:
        return f"exited with status 3; last lines of fake-{self.pid}.log:\n    boom"


class FakeRunner:
    def __init__(self, *plan: FakeProcess | errors.TrayllmError) -> None:
        self.plan = list(plan)
        self.started: list[FakeProcess] = []

    def start(self) -> FakeProcess:
        planned = self.plan.pop(0)
        if isinstance(planned, errors.TrayllmError):
            raise planned
        self.started.append(planned)
        return planned

    def already_running(self, process: FakeProcess) -> FakeProcess:
        """A daemon somebody else started, before the test."""
        self.started.append(process)
        return process

    @property
    def live(self) -> FakeProcess | None:
        return next((p for p in reversed(self.started) if p.alive), None)

    def terminate(self, pid: int, timeout: float) -> None:
        [process] = [p for p in self.started if p.pid == pid and p.alive]
        process.alive = False
        process.terminated_with = timeout


class FakeClient(DaemonClient):
    """The real client's logic over the fakes' answers (no request leaves it)."""

    def __init__(self, runner: FakeRunner) -> None:
        super().__init__(socket_path="/nonexistent/fake.sock")
        self.runner = runner

    def health(self) -> bool:
        process = self.runner.live
        if process is None:
            return False
        if process.steps[0] in ("silent", "exit"):
            process.step()
            return False
        return True

    def status(self) -> api_status.DaemonStatus:
        process = self.runner.live
        state = "exit" if process is None else process.step()
        if process is None or state in ("silent", "exit"):
            raise errors.DaemonNotRunning(f"no trayllm daemon is running on {self.where}")
        error = "no model at /x.gguf" if state == "failed" else None
        model = READY_STATUS["model"] if state == "ready" else None
        return api_status.DaemonStatus.model_validate(
            {**READY_STATUS, "state": state, "pid": process.pid, "model": model, "error": error}
        )
