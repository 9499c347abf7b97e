"""`trayllm chat --window` as its own process: it registers for `trayllm down`, and SIGTERM closes it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from waiting import wait_for

from trayllm import config
from trayllm.supervisor import instances


def test_sigterm_closes_the_window_like_its_close_button(tmp_path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":99"}  # offscreen draws nowhere; DISPLAY
    env.pop("WAYLAND_DISPLAY", None)  # only tells trayllm a desktop exists
    with (tmp_path / "chat.log").open("wb") as log:
        window = subprocess.Popen(
            [sys.executable, "-m", "trayllm", "chat", "--window"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        settings = config.load_settings()
        [held] = wait_for(lambda: instances.running(settings, "chat"), timeout=60)
        assert held.pid == window.pid
        window.send_signal(signal.SIGTERM)
        assert window.wait(30) == 0, (tmp_path / "chat.log").read_text()  # not -15: the window closed itself
        assert instances.running(settings) == []
        assert list(instances.clients_dir(settings).iterdir()) == []  # its pid file went with it
    finally:
        if window.poll() is None:
            window.kill()
            window.wait()


def test_window_without_a_display_is_a_one_line_error() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run(
        [sys.executable, "-m", "trayllm", "chat", "--window"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr == (
        "trayllm: error: no display for the chat window (DISPLAY and WAYLAND_DISPLAY are "
        "unset); use `trayllm chat --terminal`\n"
    )


def test_window_without_pyside6_names_the_extra(tmp_path) -> None:
    """A client-only install (no gui extra): one line with the fix, not a traceback. PySide6 is hidden from the
    child by a module finder that refuses it, as a missing package would."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'PySide6':\n"
        '            raise ModuleNotFoundError(f"No module named {name!r}", name=name)\n'
        "sys.meta_path.insert(0, Refuse())\n"
    )
    env = {**os.environ, "DISPLAY": ":99", "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "trayllm", "chat", "--window"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr == (
        "trayllm: error: the chat window needs the 'gui' extra (no module named 'PySide6'): "
        "pip install 'trayllm[gui]'\n"
    )
