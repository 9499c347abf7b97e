"""Switching the daemon's model and remembering the choice: `trayllm use`, the tray's Model menu, the chat's picker.

One call does what each of them offers: tell a running daemon to switch (``POST /v1/reload`` with the new
``model``), follow its event stream until ``model.loaded`` or ``model.failed`` while passing its load progress on
(read from /v1/status, which has the text the events do not), and only once the new model serves, write ``model``
into the config file, so the next start loads it too. A switch the daemon refuses, or one that fails to load,
leaves the config file as it was and raises with the daemon's reason; the old model keeps serving (the daemon
loads it back after a failed load, and this waits for that). With no daemon running the choice is only saved.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trayllm import config
from trayllm.client import DaemonClient
from trayllm.config_edit import set_setting
from trayllm.errors import DaemonNotRunning, EngineFailure, ModelLoadError, TrayllmError

STATUS_POLL_S = 0.5


@dataclass(frozen=True)
class Switched:
    """How a switch ended: ``model`` (the setting's value) saved in ``saved``; ``name`` and ``version``: what the
    daemon serves now (None where no daemon ran); ``overridden_by``: a TRAYLLM_MODEL that still wins over the file."""

    model: str
    saved: Path
    name: str | None = None
    version: str | None = None
    overridden_by: str | None = None


def switch_model(
    settings: config.Settings, model: str, on_progress: Callable[[str], None] = lambda _: None
) -> Switched:
    """Switch the daemon at ``settings``' socket to ``model`` (a ``model`` setting's value: ``model_catalog.
    model_setting_for`` makes one from what the user chose) and save the choice; see the module docstring."""
    name = version = None
    with DaemonClient.from_settings(settings) as watcher:
        if watcher.health():
            name, version = _switch(settings, watcher, model, on_progress)
    path = config.config_file()
    set_setting(path, "model", model)
    variable = config.env_name("model")
    return Switched(model, path, name, version, variable if variable in os.environ else None)


def _switch(
    settings: config.Settings, watcher: DaemonClient, model: str, on_progress: Callable[[str], None]
) -> tuple[str | None, str | None]:
    """(name, version) once the daemon serves ``model``; ModelLoadError with its reason when it does not."""
    events = watcher.events()
    next(events)  # the hello: subscribed from here on, so no event of this switch can be missed
    stop = threading.Event()
    poller = threading.Thread(target=_show_progress, args=(settings, stop, on_progress), daemon=True)
    try:
        with DaemonClient.from_settings(settings) as client:
            client.reload(model)  # a switch that cannot work: InvalidRequest here, nothing changed
        poller.start()
        failure: str | None = None
        for event in events:
            if event.type == "model.reloading" and failure is None:
                on_progress(f"switching from {event.data.get('model')} to {model or 'the embedded model'}")
            if event.type == "model.loaded" and failure is None:
                return event.data.get("model"), event.data.get("version")
            if event.type == "model.loaded":  # the previous model, loaded back after the failed switch
                raise ModelLoadError(f"{failure}; the previous model serves again")
            if event.type == "model.failed" and failure is None:
                failure = f"the switch to {model or 'the embedded model'} failed: {event.data.get('error')}"
                on_progress("loading the previous model back")
            elif event.type == "model.failed":
                raise ModelLoadError(f"{failure}, and loading the previous model back failed too: {event.data}")
        raise DaemonNotRunning("the daemon stopped during the switch")
    except EngineFailure as exc:
        raise ModelLoadError(f"lost the daemon's event stream during the switch: {exc.message}") from None
    finally:
        stop.set()
        events.close()


def _show_progress(settings: config.Settings, stop: threading.Event, on_progress: Callable[[str], None]) -> None:
    """Pass each new load step the daemon reports (/v1/status' state and load_progress) to ``on_progress``."""
    last: tuple[str, str | None] | None = None
    with DaemonClient.from_settings(settings) as client:
        while not stop.wait(STATUS_POLL_S):
            try:
                status = client.status()
            except TrayllmError:  # the event stream reports what matters; this is only the running commentary
                return
            step = (status.state, status.load_progress)
            if step != last and status.state != "ready" and not stop.is_set():
                on_progress(f"{status.state}: {status.load_progress}" if status.load_progress else status.state)
            last = step
