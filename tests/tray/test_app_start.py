"""The tray's "Start daemon" and "Open chat" take `trayllm up`'s start path, so one that fails is announced with
the line `trayllm up` prints (its log included), instead of being fired off and forgotten. Real processes that
fail fast: a daemon with no model, a chat window with no display."""

from __future__ import annotations

from pathlib import Path

import pytest

from trayllm import config
from trayllm.supervisor import instances
from trayllm.tray.app import TrayApp
from trayllm.tray.model import Notification


class Heard:
    """Stands in for the desktop's notification server."""

    def __init__(self) -> None:
        self.notes: list[Notification] = []

    def send(self, note: Notification) -> None:
        self.notes.append(note)


def tray(settings: config.Settings) -> tuple[TrayApp, Heard]:
    app = TrayApp(settings)
    heard = app.notifier = Heard()
    return app, heard


def test_start_daemon_announces_a_daemon_that_exits_with_its_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRAYLLM_MODEL", str(tmp_path / "missing.gguf"))
    settings = config.load_settings()
    app, heard = tray(settings)
    app._do("start")  # the menu runs it on a worker thread; here it runs to its end
    [note] = heard.notes
    assert note.summary == "trayllm: start failed"
    assert note.body.startswith(f"the daemon exited with status 1; last lines of {settings.state_path}/daemon.log:\n")
    assert f"trayllm: error: model {tmp_path / 'missing.gguf'} does not exist" in note.body


def test_open_chat_announces_a_window_that_cannot_open_with_its_log(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    settings = config.load_settings()
    app, heard = tray(settings)
    app._do("open-chat")
    [note] = heard.notes
    assert note.summary == "trayllm: open-chat failed"
    assert note.body.startswith(f"the chat exited with status 1; last lines of {settings.state_path}/chat.log:\n")
    assert "no display for the chat window" in note.body
    assert instances.running(settings) == []
