"""Issue 8, acceptance 2: `trayllm up` and `trayllm down` as real processes, starting and stopping a real daemon.

Headless (no DISPLAY): `up` starts a detached daemon on the embedded model and chats in the terminal; on
a desktop (Xvfb with a session bus and a tray host, tests/desktop_session.py): `up` also starts the tray
and a chat window and returns, and `down` stops all three.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fake_systemctl
import pytest
from daemons import MODEL_CACHE
from desktop_session import DesktopSession, desktop_session  # noqa: F401 (a fixture)
from waiting import gone

from trayllm import config
from trayllm.client import DaemonClient
from trayllm.supervisor import instances

pytestmark = pytest.mark.slow


@pytest.fixture
def env(converted_model_dir: Path) -> Iterator[dict[str, str]]:
    """The test's own XDG dirs (from isolated_xdg), the shared converted model, and no display; whatever `up`
    left running is killed at the end."""
    environ = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    environ.update(TRAYLLM_CACHE_DIR=str(MODEL_CACHE), TRAYLLM_WARMUP="false", PYTHONUNBUFFERED="1")
    yield environ
    settings = config.load_settings()
    leftovers = [i.pid for i in instances.running(settings)]
    with contextlib.suppress(Exception), DaemonClient.from_settings(settings) as client:
        leftovers.append(client.status().pid)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def trayllm(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trayllm", *args], env=env, input=stdin, capture_output=True, text=True, timeout=300
    )


def daemon_pid() -> int | None:
    with DaemonClient.from_settings(config.load_settings()) as client:
        return client.status().pid if client.health() else None


def test_headless_up_starts_a_detached_daemon_and_chats_in_the_terminal_then_down_stops_it(env) -> None:
    up = trayllm(env, "up", stdin="What is 2+2? Answer with one number.\n/exit\n")
    assert up.returncode == 0, up.stderr
    assert "trayllm: started the daemon (pid" in up.stderr
    assert "trayllm: ready: smollm2-135m-instruct on cpu" in up.stderr
    assert up.stdout.strip(), "the terminal chat printed no reply"
    pid = daemon_pid()
    assert pid is not None, "the daemon did not outlive `trayllm up`"

    again = trayllm(env, "up", "--no-chat")
    assert again.returncode == 0, again.stderr
    assert "daemon already running" in again.stderr and "started" not in again.stderr
    assert daemon_pid() == pid

    down = trayllm(env, "down")
    assert down.returncode == 0, down.stderr
    assert down.stderr == f"trayllm: daemon stopped (pid {pid})\n"
    assert daemon_pid() is None
    assert not config.load_settings().socket_path.exists()
    assert gone(pid)


def test_after_desktop_install_up_starts_the_daemon_through_its_systemd_unit(env, tmp_path: Path) -> None:
    """The unit `trayllm desktop install` wrote runs the daemon (tests/fake_systemctl.py stands in for the user
    manager: it runs the unit's ExecStart= line), so systemd would restart it and the journal keep its log."""
    fake_systemctl.install(tmp_path / "bin")
    env = {
        **env,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}",
        "FAKE_SYSTEMCTL_LOG": str(tmp_path / "calls.log"),
        "FAKE_SYSTEMCTL_STATE": str(tmp_path / "units"),
    }
    installed = trayllm(env, "desktop", "install")
    assert installed.returncode == 0, installed.stderr
    up = trayllm(env, "up", stdin="Say hello.\n")
    assert up.returncode == 0, up.stderr
    assert (
        "trayllm: started the daemon (systemd unit trayllm.service, log `journalctl --user -u trayllm.service`)"
    ) in up.stderr
    assert up.stdout.strip()
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls.count("--user start trayllm.service") == 1
    unit_pid = int((tmp_path / "units" / "trayllm.service.pid").read_text())
    assert daemon_pid() == unit_pid  # the daemon answering is the one the unit ran
    assert trayllm(env, "down").stderr == f"trayllm: daemon stopped (pid {unit_pid})\n"


def test_desktop_up_starts_daemon_tray_and_window_and_down_stops_all_three(
    env,
    desktop_session: DesktopSession,  # noqa: F811 (the fixture)
) -> None:
    session_env = {
        **env,
        **{
            k: desktop_session.env[k]
            for k in (
                "DISPLAY",
                "DBUS_SESSION_BUS_ADDRESS",
                "PYSTRAY_BACKEND",
                "GDK_BACKEND",
                "NO_AT_BRIDGE",
                "GSETTINGS_BACKEND",
            )
        },
        "QT_QPA_PLATFORM": "offscreen",
    }  # Qt's xcb plugin needs libs make does not install
    up = trayllm(session_env, "up")
    assert up.returncode == 0, up.stderr + (config.load_settings().state_path / "tray.log").read_text()
    for line in (
        "started the daemon (pid",
        "started the tray (pid",
        "started the chat window (pid",
        "trayllm: up; `trayllm down` stops the daemon, the tray and the chat windows",
    ):
        assert line in up.stderr
    settings = config.load_settings()
    running = {i.role: i.pid for i in instances.running(settings)}
    assert set(running) == {"tray", "chat"}
    assert desktop_session.item_property(desktop_session.wait_for_sni_item(), "Id") == "trayllm"
    pid = daemon_pid()
    assert pid is not None

    again = trayllm(session_env, "up")  # nothing doubles
    assert again.returncode == 0, again.stderr
    assert f"the tray is already open (pid {running['tray']})" in again.stderr
    assert f"the chat window is already open (pid {running['chat']})" in again.stderr
    assert "daemon already running" in again.stderr

    down = trayllm(session_env, "down")
    assert down.returncode == 0, down.stderr
    assert sorted(down.stderr.splitlines()) == sorted(
        [
            f"trayllm: tray stopped (pid {running['tray']})",
            f"trayllm: chat window closed (pid {running['chat']})",
            f"trayllm: daemon stopped (pid {pid})",
        ]
    )
    assert down.stderr.splitlines()[-1] == f"trayllm: daemon stopped (pid {pid})"  # clients first
    assert instances.running(settings) == [] and daemon_pid() is None
    assert all(gone(p) for p in (*running.values(), pid))


def test_desktop_up_reports_a_tray_that_cannot_start_and_still_opens_the_window(
    env,
    desktop_session: DesktopSession,  # noqa: F811 (the fixture)
) -> None:
    broken = {
        **env,
        "DISPLAY": desktop_session.display,
        "DBUS_SESSION_BUS_ADDRESS": desktop_session.bus_address,
        "QT_QPA_PLATFORM": "offscreen",
        "PYSTRAY_BACKEND": "nonexistent-backend",
    }
    up = trayllm(broken, "up")
    assert up.returncode == 1
    assert "trayllm: warning: the tray exited with status 1; last lines of" in up.stderr
    assert "started the chat window (pid" in up.stderr
    assert "trayllm: error: trayllm is up without the tray (see above)" in up.stderr
    assert [i.role for i in instances.running(config.load_settings())] == ["chat"]
    assert trayllm(broken, "down").returncode == 0
