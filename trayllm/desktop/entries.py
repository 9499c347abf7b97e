"""The desktop entries: ``trayllm.desktop`` launches the chat window, ``trayllm-tray.desktop`` autostarts the tray.

The chat window's QApplication calls ``setDesktopFileName("trayllm")``, which is how a Wayland compositor finds
this launcher entry (and its icon) for the window: the file name must stay ``trayllm.desktop``.
"""

from __future__ import annotations

from trayllm.desktop.keyfile import key_file
from trayllm.desktop.quoting import desktop_exec
from trayllm.desktop.target import Target

LAUNCHER_ENTRY = "trayllm.desktop"
AUTOSTART_ENTRY = "trayllm-tray.desktop"
ICON_NAME = "trayllm"
# The spec version the entries follow; desktop-file-utils 0.26 (Debian 12) does not know 1.5 yet.
SPEC_VERSION = "1.4"


def launcher_entry(target: Target) -> str:
    """trayllm.desktop: the chat window in the application menu.

    ``--window`` asks for the Qt window even without a terminal. ``StartupWMClass`` is the X11 class Qt gives
    the window (the application name), so docks group the window under this entry. No desktop actions: every
    other command either needs a terminal or is in the tray's menu.
    """
    return key_file(
        [
            (
                "Desktop Entry",
                [
                    ("Type", "Application"),
                    ("Version", SPEC_VERSION),
                    ("Name", "trayllm"),
                    ("GenericName", "Local LLM Chat"),
                    ("Comment", "Chat with the language model that runs on this computer"),
                    ("Exec", desktop_exec(target.argv("chat", "--window"))),
                    ("Icon", ICON_NAME),
                    ("Terminal", "false"),
                    ("Categories", "Utility;"),
                    ("Keywords", "LLM;AI;chat;assistant;language model;"),
                    ("StartupWMClass", "trayllm"),
                ],
            )
        ]
    )


def autostart_entry(target: Target, *, tray_unit_enabled: bool) -> str:
    """trayllm-tray.desktop: start the tray at login in sessions without the tray unit.

    With the tray unit enabled, ``X-systemd-skip=true`` keeps systemd's xdg-autostart-generator (and
    gnome-session, which reads the same key) from starting a second tray beside the unit, while sessions that
    do not run graphical-session.target (say, a plain X11 session) still start the tray from this entry. Where
    no tray unit is enabled (``--no-systemd``, or no user manager), the key must be absent, or nothing would
    start the tray in a systemd-managed session. The tray is single-instance as well, so a session manager
    that ignores the key costs a process that exits at once.
    """
    skip = [("X-systemd-skip", "true")] if tray_unit_enabled else []
    return key_file(
        [
            (
                "Desktop Entry",
                [
                    ("Type", "Application"),
                    ("Version", SPEC_VERSION),
                    ("Name", "trayllm tray icon"),
                    ("Comment", "The trayllm daemon's health, a menu and alert notifications in the panel"),
                    ("Exec", desktop_exec(target.argv("tray"))),
                    ("Icon", ICON_NAME),
                    ("Terminal", "false"),
                    ("NoDisplay", "true"),
                    ("X-GNOME-Autostart-enabled", "true"),
                    *skip,
                ],
            )
        ]
    )
