"""`trayllm tray`: the pystray icon wired to the daemon through the client, and to ``TrayModel`` for its logic.

Three background threads feed the model: one follows ``/v1/events`` and reconnects with backoff (1 s
doubling to 30 s, with the last event id so nothing kept is missed); one polls ``/v1/status`` every 5 s for
the tooltip (and, every minute or when the model changes, the Model menu's list of models); one releases storm
summaries. Every change goes through ``_apply``, which updates icon, tooltip and menu and sends notifications.

Backends: on Linux pystray's ``appindicator`` backend (StatusNotifierItem with a D-Bus menu, which
KDE, GNOME with the AppIndicator extension and most panels show), falling back to ``gtk`` (XEmbed). The
plain ``xorg`` backend has no menu and no notifications and is refused with a one-line error naming the
packages to install. Windows and macOS use pystray's native backends.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from typing import Any

from trayllm import api_status
from trayllm.client import DaemonClient
from trayllm.config import Settings
from trayllm.doctor.gpus import probe
from trayllm.errors import ConfigError, TrayllmError
from trayllm.extras import missing_extra
from trayllm.model_catalog import build_catalog
from trayllm.model_switch import switch_model
from trayllm.supervisor import instances
from trayllm.supervisor.clients import launch_client
from trayllm.supervisor.daemon import start_and_wait_ready
from trayllm.tray.icons import icon_image
from trayllm.tray.model import USE, MenuItem, Notification, TrayModel
from trayllm.tray.notify import DesktopNotifier

log = logging.getLogger(__name__)

POLL_S = 5.0
CATALOG_S = 60.0  # how often the Model menu's list is refreshed (and whenever the serving model changes)
MAX_BACKOFF_S = 30.0
LINUX_PACKAGES = "gir1.2-ayatanaappindicator3-0.1 gir1.2-gtk-3.0 and PyGObject (pip install 'trayllm[gui]')"


def load_pystray() -> Any:
    """pystray with a backend that has a menu and notifications; ConfigError naming the fix otherwise."""
    if sys.platform.startswith("linux"):
        os.environ.setdefault("PYSTRAY_BACKEND", "appindicator")
    try:
        import pystray
    except ImportError as exc:
        if missing := missing_extra(exc, "the tray"):  # pystray itself, or Pillow under it
            raise missing from None
        if sys.platform.startswith("linux") and os.environ.get("PYSTRAY_BACKEND") == "appindicator":
            os.environ["PYSTRAY_BACKEND"] = "gtk"  # no AppIndicator typelib: try Gtk.StatusIcon
            try:
                import pystray
            except ImportError:
                raise ConfigError(f"the tray needs {LINUX_PACKAGES} ({exc})") from None
        else:
            raise ConfigError(f"the tray cannot load pystray ({exc}): pip install 'trayllm[gui]'") from None
    if pystray.Icon.__module__.endswith("_xorg"):
        raise ConfigError(
            f"pystray fell back to its X backend, which has no menu and no notifications; install {LINUX_PACKAGES}"
        )
    return pystray


class TrayApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = TrayModel(kibana_url=settings.kibana_url)
        self.notifier = DesktopNotifier()
        self.icon: Any = None
        self._pystray: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listed_serving: str | None = None  # the serving model's source when the models were last listed

    # -- lifecycle -------------------------------------------------------------------------------

    def run(self) -> None:
        """Show the icon and serve its menu until Quit (blocks: the toolkit's main loop)."""
        pystray = self._pystray = load_pystray()
        with instances.hold(self.settings, "tray"):  # one tray per daemon; `trayllm down` finds it here
            view = self.model.view()
            self.icon = pystray.Icon(
                "trayllm", icon_image(view.state), view.tooltip, menu=pystray.Menu(self._menu_items)
            )
            if getattr(self.icon, "HAS_NOTIFICATION", False):
                self.notifier.fallback = self.icon.notify
            self.icon.run(setup=self._setup)

    def _setup(self, icon: Any) -> None:
        icon.visible = True
        for target in (self._follow_events, self._poll_status):
            threading.Thread(target=target, name=f"trayllm-tray-{target.__name__}", daemon=True).start()

    def quit(self) -> None:
        self._stop.set()
        if self.icon is not None:
            self.icon.stop()

    # -- the model's inputs ----------------------------------------------------------------------

    def _apply(self, change: Callable[[TrayModel], list[Notification] | None]) -> None:
        """Change the model, then show the result: icon, tooltip, menu, notifications."""
        with self._lock:
            notes = change(self.model) or []
            view = self.model.view()
        icon = self.icon
        if icon is not None:
            icon.icon = icon_image(view.state)
            icon.title = view.tooltip
            icon.update_menu()
        for note in notes:
            self.notifier.send(note)

    def _follow_events(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                with DaemonClient.from_settings(self.settings) as client:
                    for event in client.events(self.model.last_event_id):
                        if event.type == "hello":
                            self._apply(functools.partial(TrayModel.connected, hello=event.data))
                            backoff = 1.0
                        else:
                            self._apply(
                                functools.partial(TrayModel.event, kind=event.type, data=event.data, event_id=event.id)
                            )
            except TrayllmError as exc:
                log.debug("event stream: %s", exc.message)
            except Exception:  # whatever breaks the stream, the tray carries on and reconnects
                log.exception("event stream failed")
            if self._stop.is_set():
                return
            self._apply(lambda m: m.disconnected())
            self._stop.wait(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    def _poll_status(self) -> None:
        listed_at: float | None = None
        while not self._stop.wait(POLL_S if self.model.reachable else 1.0):
            self._apply(lambda m: m.tick())
            if not self.model.reachable:
                continue
            try:
                with DaemonClient.from_settings(self.settings) as client:
                    status = client.status()
            except TrayllmError:
                continue
            self._apply(functools.partial(TrayModel.status, status=status))
            serving = status.model.source if status.model else None
            if listed_at is None or time.monotonic() - listed_at > CATALOG_S or serving != self._listed_serving:
                self._list_models(status)
                listed_at = time.monotonic()

    def _list_models(self, status: api_status.DaemonStatus) -> None:
        """The Model menu's entries: the catalog, marked with what ``status`` says serves."""
        try:
            entries = build_catalog(self.settings, probe(), status.model).models
        except Exception:  # a cache the catalog cannot read must not stop the status polling
            log.exception("listing the models failed")
            return
        self._listed_serving = status.model.source if status.model else None
        self._apply(functools.partial(TrayModel.catalog, models=entries))

    # -- the menu --------------------------------------------------------------------------------

    def _menu_items(self) -> list[Any]:
        with self._lock:
            items = self.model.view().menu
        return self._pystray_items(items)

    def _pystray_items(self, items: tuple[MenuItem, ...]) -> list[Any]:
        pystray = self._pystray
        out = []
        for item in items:
            if item.label == "-":
                out.append(pystray.Menu.SEPARATOR)
                continue
            if item.submenu:
                out.append(pystray.MenuItem(item.label, pystray.Menu(*self._pystray_items(item.submenu))))
                continue
            checked = None if item.checked is None else (lambda _i, value=item.checked: value)
            out.append(
                pystray.MenuItem(
                    item.label,
                    self._handler(item),
                    checked=checked,
                    enabled=item.enabled,
                    default=item.action == "open-chat",
                )
            )
        return out

    def _handler(self, item: MenuItem) -> Callable[[Any, Any], None]:
        def handle(_icon: Any, _item: Any) -> None:
            if item.action == "quit":
                self.quit()
                return
            threading.Thread(target=self._do, args=(item.action,), daemon=True).start()

        return handle

    def _do(self, action: str) -> None:
        """A menu action, off the toolkit's thread; a failure becomes a notification.

        Opening a window and starting the daemon wait for the outcome, as `trayllm up` does, so one that
        does not come up is announced with the same line `trayllm up` prints."""
        try:
            if action == "open-chat":
                launch_client(self.settings, "chat")
            elif action == "open-dashboards":
                webbrowser.open(f"{self.settings.kibana_url.rstrip('/')}/app/dashboards")
            elif action == "start":
                start_and_wait_ready(self.settings)
            elif action.startswith(USE):
                switched = switch_model(self.settings, action.removeprefix(USE))
                self._listed_serving = None  # list again at the next poll, marking the new model
                self.notifier.send(Notification("action", "trayllm: model switched", f"now serving {switched.name}", 1))
            elif action in ("pause", "resume", "reload"):
                with DaemonClient.from_settings(self.settings) as client:
                    if action == "pause":
                        client.pause("paused from the tray")
                    elif action == "resume":
                        client.resume()
                    else:
                        client.reload()
        except TrayllmError as exc:
            what = "switching the model" if action.startswith(USE) else action
            self.notifier.send(Notification("action", f"trayllm: {what} failed", exc.message, 1))
