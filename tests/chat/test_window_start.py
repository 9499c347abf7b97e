"""The chat window's "Start daemon" (offscreen, pytest-qt): `trayllm up`'s start path on a worker thread, with its
outcome in the banner: gone once the model is ready, or the line `trayllm up` prints, kept over the poller's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemons import MODEL_CACHE
from PySide6.QtCore import Qt

from trayllm import config
from trayllm.chat.store import ConversationStore
from trayllm.chat.window import ChatWindow
from trayllm.supervisor.clients import stop_all


@pytest.fixture
def window(qtbot, tmp_path: Path) -> Iterator[ChatWindow]:
    """A window on this test's socket, with no daemon yet: its banner offers the start."""
    store = ConversationStore(tmp_path / "conversations.db")
    shown = ChatWindow(config.load_settings(), store, poll_ms=300)
    qtbot.addWidget(shown)
    qtbot.waitUntil(lambda: not shown.banner.isHidden(), timeout=10_000)
    yield shown
    shown.close()
    store.close()
    with contextlib.suppress(Exception):
        stop_all(config.load_settings(), 30)


def test_a_start_that_fails_shows_the_daemons_own_error_and_keeps_it(
    qtbot, window: ChatWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAYLLM_MODEL", str(tmp_path / "missing.gguf"))  # the daemon the button starts reads it
    qtbot.mouseClick(window.start_button, Qt.MouseButton.LeftButton)
    assert not window.start_button.isEnabled()
    assert window.banner_text.text() == "Starting the daemon…"
    qtbot.waitUntil(lambda: "did not start" in window.banner_text.text(), timeout=60_000)
    qtbot.wait(1000)  # a few polls of the status poller, which finds no daemon
    text = window.banner_text.text()
    assert text.startswith("The daemon did not start: the daemon exited with status 1; last lines of ")
    assert f"trayllm: error: model {tmp_path / 'missing.gguf'} does not exist" in text
    assert not window.banner.isHidden() and window.start_button.isEnabled()


@pytest.mark.slow
def test_a_start_that_works_hides_the_banner_once_the_model_is_ready(
    qtbot, window: ChatWindow, converted_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAYLLM_CACHE_DIR", str(MODEL_CACHE))
    monkeypatch.setenv("TRAYLLM_WARMUP", "false")
    qtbot.mouseClick(window.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.banner.isHidden() and window.start_button.isEnabled(), timeout=120_000)
    qtbot.waitUntil(lambda: window.model_name == "smollm2-135m-instruct", timeout=10_000)
