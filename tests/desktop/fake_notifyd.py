"""A fake org.freedesktop.Notifications server that records every Notify call (run as a script).

Each Notify call is appended to the JSON-lines file given as the only argument, with its arguments
by name (hints unwrapped: urgency is an int, byte arrays become {"bytes": length}). Ids increase
from 1; a call with a replaces_id is answered with that same id, as the spec says. Nothing is drawn.

A second interface, org.trayllm.test.FakeNotifications, lets a test play the user: InvokeAction
and Close emit ActionInvoked and NotificationClosed as a real server would.

    python fake_notifyd.py notifications.jsonl
"""

# dbus-next reads D-Bus signatures from string annotations ("s", "as", "a{sv}"), which are not
# Python names; hence no `from __future__ import annotations` and:
# ruff: noqa: F821, F722

import asyncio
import json
import sys
import time
from typing import Any

from dbus_next import BusType, Variant
from dbus_next.aio import MessageBus
from dbus_next.constants import RequestNameReply
from dbus_next.service import ServiceInterface, method, signal

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"
CAPABILITIES = ["actions", "body", "body-markup", "icon-static", "persistence"]


def plain(value: Any) -> Any:
    """A D-Bus value as JSON: variants unwrapped, byte strings reduced to their length."""
    if isinstance(value, Variant):
        return plain(value.value)
    if isinstance(value, bytes | bytearray):
        return {"bytes": len(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


class Notifications(ServiceInterface):
    def __init__(self, log_path: str) -> None:
        super().__init__(NAME)
        self.log_path = log_path
        self.last_id = 0
        self.open: set[int] = set()

    @method()
    def Notify(
        self,
        app_name: "s",
        replaces_id: "u",
        app_icon: "s",
        summary: "s",
        body: "s",
        actions: "as",
        hints: "a{sv}",
        expire_timeout: "i",
    ) -> "u":
        if replaces_id:  # the spec: the answer is replaces_id itself
            notification_id = replaces_id
            self.last_id = max(self.last_id, replaces_id)
        else:
            self.last_id += 1
            notification_id = self.last_id
        self.open.add(notification_id)
        record = {
            "id": notification_id,
            "app_name": app_name,
            "replaces_id": replaces_id,
            "app_icon": app_icon,
            "summary": summary,
            "body": body,
            "actions": list(actions),
            "hints": plain(hints),
            "urgency": plain(hints.get("urgency")),
            "expire_timeout": expire_timeout,
            "time": time.time(),
        }
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        return notification_id

    @method()
    def CloseNotification(self, notification_id: "u"):
        self.close(notification_id, 3)  # 3: closed by a call to CloseNotification

    @method()
    def GetCapabilities(self) -> "as":
        return CAPABILITIES

    @method()
    def GetServerInformation(self) -> "ssss":
        return ["trayllm-fake-notifyd", "trayllm", "0.1", "1.2"]

    @signal()
    def NotificationClosed(self, notification_id: int, reason: int) -> "uu":
        return [notification_id, reason]

    @signal()
    def ActionInvoked(self, notification_id: int, action_key: str) -> "us":
        return [notification_id, action_key]

    def close(self, notification_id: int, reason: int) -> None:
        if notification_id in self.open:
            self.open.discard(notification_id)
            self.NotificationClosed(notification_id, reason)


class Control(ServiceInterface):
    """What a user would do with a notification on screen."""

    def __init__(self, server: Notifications) -> None:
        super().__init__("org.trayllm.test.FakeNotifications")
        self.server = server

    @method()
    def InvokeAction(self, notification_id: "u", action_key: "s"):
        self.server.ActionInvoked(notification_id, action_key)

    @method()
    def Close(self, notification_id: "u", reason: "u"):
        self.server.close(notification_id, reason)  # 1: expired, 2: dismissed by the user


async def main(log_path: str) -> None:
    open(log_path, "a").close()
    bus = await MessageBus(bus_type=BusType.SESSION).connect()
    server = Notifications(log_path)
    bus.export(PATH, server)
    bus.export(PATH, Control(server))
    if await bus.request_name(NAME) != RequestNameReply.PRIMARY_OWNER:
        sys.exit(f"{NAME} is already owned on this bus")
    await bus.wait_for_disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
