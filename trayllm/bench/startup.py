"""Warm-start benchmark: how long a fresh `trayllm daemon` takes until /readyz says ready.

Each run starts a real daemon process on a private socket (its own XDG dirs) that shares the
user's weight cache, so the first run converts the GGUF if needed and the rest measure the
warm path a user sees on every login: imports, loading cached safetensors, warm-up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trayllm.client import DaemonClient
from trayllm.config import Settings
from trayllm.errors import DaemonNotRunning, TrayllmError

POLL_S = 0.02


@dataclass(frozen=True)
class StartupRun:
    seconds: float
    primed: bool  # True for the first run, which may have converted the model


@contextlib.contextmanager
def private_daemon(
    settings: Settings, workdir: Path, timeout: float, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[DaemonClient, float]]:
    """A real `trayllm daemon` process on its own socket and XDG dirs, sharing the weight cache.

    Yields a client and the seconds from process start to ready; SIGTERMs the daemon on exit.
    """
    env = dict(os.environ)
    for var in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        path = workdir / var.lower()
        path.mkdir(mode=0o700, exist_ok=True)
        env[var] = str(path)
    env["TRAYLLM_CACHE_DIR"] = str(settings.cache_path)
    env.pop("TRAYLLM_SOCKET", None)
    env.update(extra_env or {})
    began = time.monotonic()
    with (workdir / "daemon.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "trayllm", "daemon"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    probe = Settings(socket=str(workdir / "xdg_runtime_dir" / "trayllm" / "daemon.sock"))
    try:
        with DaemonClient.from_settings(probe) as client:
            try:
                client.wait_ready(timeout, alive=lambda: process.poll() is None, interval=POLL_S)
            except DaemonNotRunning as exc:
                tail = (workdir / "daemon.log").read_text(errors="replace")[-2000:]
                raise TrayllmError(f"{exc.message} (exit status {process.poll()}):\n{tail}") from None
            yield client, time.monotonic() - began
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def measure_startup(settings: Settings, runs: int, timeout: float = 600.0) -> list[StartupRun]:
    """One priming start, then ``runs`` timed warm starts."""
    results = []
    with tempfile.TemporaryDirectory(prefix="trayllm-startup-") as tmp:
        for index in range(runs + 1):
            workdir = Path(tmp) / f"run{index}"
            workdir.mkdir()
            with private_daemon(settings, workdir, timeout) as (_, seconds):
                results.append(StartupRun(seconds, primed=index == 0))
    return results


def to_markdown(results: list[StartupRun], command: str) -> str:
    warm = [r.seconds for r in results if not r.primed]
    lines = [
        f"### trayllm warm start, {time.strftime('%Y-%m-%d')}",
        "",
        f"- Machine: {os.cpu_count()} CPUs; process start to `/readyz` = 200, warm-up included",
        f"- Command: `{command}`",
        f"- Priming run (may convert the GGUF): {results[0].seconds:.2f} s",
        f"- Warm starts ({len(warm)}): min {min(warm):.2f} s, median {statistics.median(warm):.2f} s, "
        f"max {max(warm):.2f} s",
    ]
    return "\n".join(lines)


PROMPT = "Write two sentences about the sea."


def sequential_latencies(client: DaemonClient, requests: int, max_tokens: int) -> list[float]:
    """Seconds each of ``requests`` greedy chat requests took, one after another: the A/B benches' workload."""
    out = []
    for _ in range(requests):
        began = time.perf_counter()
        client.chat({"messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens, "temperature": 0})
        out.append(time.perf_counter() - began)
    return out
