"""A fake org.kde.StatusNotifierWatcher for the tests' private session bus (run as a script).

It announces a host (IsStatusNotifierHostRegistered is true), so libayatana-appindicator registers
its StatusNotifierItem here instead of falling back to an XEmbed tray icon. Items are kept in KDE's
"<bus name><object path>" form, dropped when their owner leaves the bus, and every registration is
appended to the JSON-lines file given as the only argument.

    python fake_sni_watcher.py registrations.jsonl
"""

# dbus-next reads D-Bus signatures from string annotations ("s", "as", "a{sv}"), which are not
# Python names; hence no `from __future__ import annotations` and:
# ruff: noqa: F821, F722

import asyncio
import json
import sys

from dbus_next import BusType, Message, MessageType
from dbus_next.aio import MessageBus
from dbus_next.constants import PropertyAccess, RequestNameReply
from dbus_next.service import ServiceInterface, dbus_property, method, signal

NAME = "org.kde.StatusNotifierWatcher"
PATH = "/StatusNotifierWatcher"


class Watcher(ServiceInterface):
    def __init__(self, log_path: str) -> None:
        super().__init__(NAME)
        self.items: list[str] = []
        self.log_path = log_path

    # The two methods are declared for introspection; calls go to handle(), which knows the sender.
    @method()
    def RegisterStatusNotifierItem(self, service: "s"):
        raise NotImplementedError

    @method()
    def RegisterStatusNotifierHost(self, service: "s"):
        raise NotImplementedError

    @dbus_property(access=PropertyAccess.READ)
    def RegisteredStatusNotifierItems(self) -> "as":
        return list(self.items)

    @dbus_property(access=PropertyAccess.READ)
    def IsStatusNotifierHostRegistered(self) -> "b":
        return True

    @dbus_property(access=PropertyAccess.READ)
    def ProtocolVersion(self) -> "i":
        return 0

    @signal()
    def StatusNotifierItemRegistered(self, item: str) -> "s":
        return item

    @signal()
    def StatusNotifierItemUnregistered(self, item: str) -> "s":
        return item

    @signal()
    def StatusNotifierHostRegistered(self):
        return None

    def handle(self, msg: Message) -> Message | None:
        if (
            msg.message_type == MessageType.SIGNAL
            and msg.member == "NameOwnerChanged"
            and msg.sender == "org.freedesktop.DBus"
        ):
            name, _old, new = msg.body
            if not new:
                for item in [i for i in self.items if i.split("/", 1)[0] == name]:
                    self.items.remove(item)
                    self.StatusNotifierItemUnregistered(item)
            return None
        if msg.message_type != MessageType.METHOD_CALL or msg.interface != NAME:
            return None
        if msg.member == "RegisterStatusNotifierHost":
            return Message.new_method_return(msg)
        if msg.member != "RegisterStatusNotifierItem":
            return None
        service = msg.body[0]
        # libayatana sends its object path; other clients send a bus name (item at /StatusNotifierItem).
        item = msg.sender + service if service.startswith("/") else service + "/StatusNotifierItem"
        if item not in self.items:
            self.items.append(item)
            self.StatusNotifierItemRegistered(item)
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"service": service, "sender": msg.sender, "item": item}) + "\n")
        return Message.new_method_return(msg)


async def main(log_path: str) -> None:
    bus = await MessageBus(bus_type=BusType.SESSION).connect()
    watcher = Watcher(log_path)
    bus.export(PATH, watcher)
    bus.add_message_handler(watcher.handle)
    await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="AddMatch",
            signature="s",
            body=["type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'"],
        )
    )
    if await bus.request_name(NAME) != RequestNameReply.PRIMARY_OWNER:
        sys.exit(f"{NAME} is already owned on this bus")
    watcher.StatusNotifierHostRegistered()
    await bus.wait_for_disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
