"""Desktop notifications: freedesktop ``org.freedesktop.Notifications`` on Linux, the tray backend elsewhere.

On Linux the tray calls ``Notify`` on the session bus directly (jeepney, pure Python), independent of the tray
library, so urgency and ``replaces_id`` work: a standing alert is updated in place rather than stacked.
An OOM is urgency 2 (critical: it stays until dismissed), the rest urgency 1. When no notification server
owns the name (a bare X session), or off Linux, notifications go to ``fallback`` (pystray's own
``notify``) or, lacking that, to the log.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from trayllm.tray.model import Notification

log = logging.getLogger(__name__)

APP_NAME = "trayllm"
BUS_NAME = "org.freedesktop.Notifications"
ICONS = {2: "dialog-error", 1: "dialog-warning", 0: "dialog-information"}


class DesktopNotifier:
    def __init__(self, fallback: Callable[[str, str], None] | None = None) -> None:
        self.fallback = fallback
        self._ids: dict[str, int] = {}  # notification key -> the server's id, for replaces_id
        self._lock = threading.Lock()
        self._connection = None

    def _bus(self) -> Any:
        """The session-bus connection, or None when there is no notification server to talk to."""
        if self._connection is not None:
            return self._connection
        if not sys.platform.startswith("linux"):
            return None
        try:
            from jeepney.bus_messages import message_bus
            from jeepney.io.blocking import open_dbus_connection

            connection = open_dbus_connection(bus="SESSION")
            owned = connection.send_and_get_reply(message_bus.NameHasOwner(BUS_NAME)).body[0]
        except Exception as exc:  # no session bus, no jeepney: fall back
            log.info("no desktop notification service (%s)", exc)
            return None
        if not owned:
            connection.close()
            return None
        self._connection = connection
        return connection

    def send(self, note: Notification) -> None:
        with self._lock:
            connection = self._bus()
            if connection is None:
                self._fall_back(note)
                return
            from jeepney import DBusAddress, new_method_call

            address = DBusAddress("/org/freedesktop/Notifications", bus_name=BUS_NAME, interface=BUS_NAME)
            timeout = 0 if note.urgency == 2 else -1  # critical stays until dismissed; others: the server's default
            message = new_method_call(
                address,
                "Notify",
                "susssasa{sv}i",
                (
                    APP_NAME,
                    self._ids.get(note.key, 0),
                    ICONS[note.urgency],
                    note.summary,
                    note.body,
                    [],
                    {"urgency": ("y", note.urgency), "desktop-entry": ("s", "trayllm")},
                    timeout,
                ),
            )
            try:
                reply = connection.send_and_get_reply(message, timeout=5)
            except Exception as exc:
                log.warning("could not send a notification (%s)", exc)
                self._connection = None
                self._fall_back(note)
                return
            self._ids[note.key] = int(reply.body[0])

    def _fall_back(self, note: Notification) -> None:
        if self.fallback is not None:
            try:
                self.fallback(note.body, note.summary)
                return
            except Exception as exc:  # the backend cannot notify (pystray's xorg backend raises)
                log.debug("tray backend notification failed: %s", exc)
        log.warning("%s: %s", note.summary, note.body)
