"""The icon pictures, and the notifier's paths: a real notification server on a session bus, and none."""

from __future__ import annotations

from desktop_session import DesktopSession

from trayllm.tray.icons import COLOURS, icon_image
from trayllm.tray.model import Notification
from trayllm.tray.notify import DesktopNotifier


def test_every_state_has_its_own_colour_at_the_icon_centre():
    centres = {}
    for state in COLOURS:
        image = icon_image(state)
        assert image.size == (64, 64) and image.mode == "RGBA"
        assert image.getpixel((0, 0))[3] == 0  # transparent corners
        centres[state] = image.getpixel((12, 32))
    assert len(set(centres.values())) == len(COLOURS)


def test_notifications_replace_their_standing_copy_by_key(desktop_session: DesktopSession, monkeypatch):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", desktop_session.bus_address)
    notifier = DesktopNotifier()
    notifier.send(Notification("oom", "trayllm: GPU out of memory", "first", 2))
    notifier.send(Notification("slo.peak_vram", "trayllm: SLO breached: peak VRAM", "vram", 1))
    notifier.send(Notification("oom", "trayllm: GPU out of memory resolved", "quiet", 1))
    first, vram, resolved = desktop_session.wait_for_notifications(3)
    assert (first["urgency"], first["expire_timeout"], first["replaces_id"]) == (2, 0, 0)
    assert (vram["urgency"], vram["expire_timeout"]) == (1, -1)
    assert resolved["replaces_id"] == first["id"]  # updated in place, not stacked
    assert resolved["id"] == first["id"] and vram["id"] != first["id"]


def test_without_a_notification_server_it_falls_back(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    shown = []
    DesktopNotifier(fallback=lambda body, title: shown.append((title, body))).send(
        Notification("oom", "trayllm: GPU out of memory", "body", 2)
    )
    assert shown == [("trayllm: GPU out of memory", "body")]
    DesktopNotifier().send(Notification("oom", "lost?", "no: logged", 2))
    assert "lost?: no: logged" in caplog.text
