"""The desktop harness itself: a real pystray icon (appindicator backend) under Xvfb, driven over D-Bus."""

from __future__ import annotations

import sys
from pathlib import Path

from desktop_session import DesktopSession
from jeepney.low_level import HeaderFields
from waiting import wait_for

TRAY_APP = Path(__file__).parent / "tray_app.py"


def events(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_tray_registers_and_is_driven_through_its_dbusmenu(desktop_session: DesktopSession, tmp_path: Path) -> None:
    events_path = tmp_path / "events.txt"
    tray = desktop_session.popen([sys.executable, str(TRAY_APP), str(events_path)])
    item = desktop_session.wait_for_sni_item()

    assert wait_for(lambda: events(events_path))[0] == "ready backend=pystray._appindicator"
    # libayatana registers again on every set_menu (pystray's update_menu), always the same item.
    registrations = desktop_session.registrations()
    assert {r["item"] for r in registrations} == {item}
    assert registrations[0]["service"] == "/org/ayatana/NotificationItem/trayllm_test"
    assert desktop_session.item_property(item, "Id") == "trayllm_test"

    menu = [entry for entry in desktop_session.menu_layout(item) if entry.type != "separator"]
    assert [(e.label, e.enabled, e.toggle_type) for e in menu] == [
        ("Open chat", True, ""),
        ("Pause", True, "checkmark"),
        ("Quit", True, ""),
    ]
    assert not menu[1].checked

    desktop_session.click(item, "Pause")
    wait_for(lambda: "paused=True" in events(events_path))
    pause = wait_for(lambda: next(e for e in desktop_session.menu_layout(item) if e.label == "Pause").checked)
    assert pause

    desktop_session.click(item, "Open chat")
    [notification] = desktop_session.wait_for_notifications(1)
    assert notification["summary"] == "trayllm test" and notification["body"] == "The chat window would open now"

    desktop_session.click(item, "Quit")
    assert tray.wait(15) == 0
    assert events(events_path)[-2:] == ["quit", "stopped"]
    wait_for(lambda: desktop_session.sni_items() == [])  # the watcher drops items whose owner left


def test_jeepney_notify_with_urgency_and_replaces_id_is_recorded(desktop_session: DesktopSession) -> None:
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection
    from jeepney.wrappers import unwrap_msg

    server = DBusAddress(
        "/org/freedesktop/Notifications",
        bus_name="org.freedesktop.Notifications",
        interface="org.freedesktop.Notifications",
    )

    def notify(connection, replaces_id: int, summary: str) -> int:
        message = new_method_call(
            server,
            "Notify",
            "susssasa{sv}i",
            (
                "trayllm",
                replaces_id,
                "dialog-error",
                summary,
                "VRAM exhausted",
                ["open", "Open chat"],
                {"urgency": ("y", 2), "category": ("s", "device.error")},
                0,
            ),
        )
        return unwrap_msg(connection.send_and_get_reply(message, timeout=5))[0]

    with open_dbus_connection(desktop_session.bus_address) as connection:
        first = notify(connection, 0, "GPU out of memory")
        again = notify(connection, first, "GPU out of memory (2)")
        other = notify(connection, 0, "another")
        capabilities = unwrap_msg(connection.send_and_get_reply(new_method_call(server, "GetCapabilities"), timeout=5))[
            0
        ]

    assert (first, again, other) == (1, 1, 2)
    assert "actions" in capabilities
    recorded = desktop_session.wait_for_notifications(3)
    assert recorded[1] | {"time": None} == {
        "id": 1,
        "app_name": "trayllm",
        "replaces_id": 1,
        "app_icon": "dialog-error",
        "summary": "GPU out of memory (2)",
        "body": "VRAM exhausted",
        "actions": ["open", "Open chat"],
        "hints": {"urgency": 2, "category": "device.error"},
        "urgency": 2,
        "expire_timeout": 0,
        "time": None,
    }
    assert [n["urgency"] for n in recorded] == [2, 2, 2]


def test_playing_the_user_emits_action_invoked_and_notification_closed(desktop_session: DesktopSession) -> None:
    from jeepney import DBusAddress, MatchRule, message_bus, new_method_call
    from jeepney.io.blocking import open_dbus_connection
    from jeepney.wrappers import unwrap_msg

    path, interface = "/org/freedesktop/Notifications", "org.freedesktop.Notifications"
    server = DBusAddress(path, bus_name=interface, interface=interface)
    rule = MatchRule(type="signal", path=path, interface=interface)
    with (
        open_dbus_connection(desktop_session.bus_address) as connection,
        connection.filter(rule, bufsize=10) as signals,
    ):  # the default bufsize of 1 drops all but the last
        unwrap_msg(connection.send_and_get_reply(message_bus.AddMatch(rule), timeout=5))
        notify = new_method_call(
            server,
            "Notify",
            "susssasa{sv}i",
            ("trayllm", 0, "", "slow", "p95 over target", ["default", "Open"], {}, -1),
        )
        first, second, third = (unwrap_msg(connection.send_and_get_reply(notify, timeout=5))[0] for _ in range(3))

        desktop_session.invoke_action(first, "default")
        desktop_session.dismiss(second)
        close = new_method_call(server, "CloseNotification", "u", (third,))
        unwrap_msg(connection.send_and_get_reply(close, timeout=5))
        received = [connection.recv_until_filtered(signals, timeout=5) for _ in range(3)]

    assert [(m.header.fields[HeaderFields.member], m.body) for m in received] == [
        ("ActionInvoked", (first, "default")),
        ("NotificationClosed", (second, 2)),
        ("NotificationClosed", (third, 3)),
    ]


def test_screenshot_is_a_png_of_the_whole_screen(desktop_session: DesktopSession, tmp_path: Path) -> None:
    from PIL import Image

    path = desktop_session.screenshot(tmp_path / "screen.png")
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1280, 800)
