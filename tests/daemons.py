"""Real daemons for tests: a `trayllm daemon` process with its own XDG dirs, on the shared model cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
MODEL_CACHE = Path(os.environ.get("TRAYLLM_TEST_CACHE", REPO / ".cache" / "trayllm"))
READY_TIMEOUT_S = 600  # the first run converts the GGUF


@dataclass
class RunningDaemon:
    process: subprocess.Popen[bytes]
    socket: Path
    env: dict[str, str]
    log: Path

    @property
    def records(self) -> Path:
        """Its request-record file, under the XDG state dir spawn_daemon gave it."""
        return self.socket.parents[2] / "xdg_state_home" / "trayllm" / "requests.jsonl"

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://trayllm", timeout=timeout
        )

    def post_in_background(self, body: dict) -> threading.Thread:
        """POST a chat completion from another thread (to fill the batch or the queue)."""

        def post() -> None:
            with self.client() as client:
                client.post("/v1/chat/completions", json=body)

        thread = threading.Thread(target=post)
        thread.start()
        return thread

    def status(self) -> dict:
        with self.client() as c:
            return c.get("/v1/status").json()

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def spawn_daemon(home: Path, **settings: object) -> RunningDaemon:
    """Start `trayllm daemon` as a real process with its own XDG dirs; wait until /readyz says ready."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAYLLM_")}
    for var in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        (home / var.lower()).mkdir(parents=True, exist_ok=True, mode=0o700)
        env[var] = str(home / var.lower())
    env["TRAYLLM_CACHE_DIR"] = str(MODEL_CACHE)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({f"TRAYLLM_{k.upper()}": str(v) for k, v in settings.items()})
    socket = home / "xdg_runtime_dir" / "trayllm" / "daemon.sock"
    log = home / "daemon.log"
    with log.open("wb") as sink:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "trayllm", "daemon"], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    daemon = RunningDaemon(process, socket, env, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"daemon exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if socket.exists():
            try:
                with daemon.client() as c:
                    if c.get("/readyz").status_code == 200:
                        return daemon
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    daemon.stop()
    raise AssertionError(f"daemon not ready in {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
