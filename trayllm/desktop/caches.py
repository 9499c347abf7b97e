"""Telling the desktop that launcher entries and icons came or went.

Desktops also notice the files by themselves (at the next login at the latest), so this is best effort: a
missing tool is skipped and a failing one only warns.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from trayllm.desktop.tools import available, run_tool


def refresh_caches(applications_dir: Path, hicolor_dir: Path, warn: Callable[[str], None]) -> None:
    """Run ``update-desktop-database`` on the applications dir, and bring the hicolor icon cache up to date.

    The hicolor dir is touched, which is how running GTK programs learn that it changed. Its icon cache is
    rebuilt (``gtk-update-icon-cache -f -t``; ``-t`` because a user's hicolor dir has no index.theme) only where
    one exists: GTK trusts a cache that is newer than the dir, so one created here would hide the icons that
    other programs later put into the dir without rebuilding it; without a cache GTK reads the dir itself.
    """
    commands = []
    if applications_dir.is_dir():
        commands.append(["update-desktop-database", "-q", str(applications_dir)])
    if hicolor_dir.is_dir():
        try:
            os.utime(hicolor_dir)
        except OSError as exc:
            warn(f"cannot touch {hicolor_dir} ({exc.strerror}); running programs may show the old icon")
        if (hicolor_dir / "icon-theme.cache").is_file():
            commands.append(["gtk-update-icon-cache", "-q", "-f", "-t", str(hicolor_dir)])
    for command in commands:
        failure = run_tool(command) if available(command[0]) else None
        if failure:
            warn(f"{failure}; the desktop picks the change up at the next login at the latest")
