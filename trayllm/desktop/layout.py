"""Which files make up trayllm's desktop integration, and where each one goes.

Every file has a place relative to an XDG base: units and the autostart entry under the config home
(``systemd/user/``, ``autostart/``), the launcher entry and the icons under the data home (``applications/``,
``icons/hicolor/``). A per-user install puts them under $XDG_CONFIG_HOME and $XDG_DATA_HOME; ``packaging/``
keeps the same relative paths, which a distro maps to /usr/lib/systemd/user, /etc/xdg/autostart and /usr/share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from trayllm import config
from trayllm.desktop import entries, icon, units
from trayllm.desktop.target import Target

Base = Literal["config", "data"]
APPLICATIONS_DIR = PurePosixPath("applications")
HICOLOR_DIR = PurePosixPath("icons/hicolor")
UNITS_DIR = PurePosixPath("systemd/user")


@dataclass(frozen=True)
class DesktopFile:
    """One file: its XDG base, its path below that base, and how to render its bytes for a target."""

    base: Base
    relative: PurePosixPath
    render: Callable[[Target], bytes]

    def installed_path(self) -> Path:
        """Where a per-user install puts it."""
        return base_dir(self.base) / self.relative


def base_dir(base: Base) -> Path:
    """The current user's directory for ``base`` ($XDG_CONFIG_HOME or $XDG_DATA_HOME)."""
    return config.xdg_config_home() if base == "config" else config.xdg_data_home()


def _text(render: Callable[[Target], str]) -> Callable[[Target], bytes]:
    return lambda target: render(target).encode()


def _png(size: int) -> Callable[[Target], bytes]:
    return lambda _target: icon.packaged_png(size)


def desktop_files(*, with_units: bool) -> tuple[DesktopFile, ...]:
    """Every file, in install order; without units (``--no-systemd``) the autostart entry starts the tray alone.

    Uninstall asks for the files with units: it removes whatever any install could have written.
    """
    unit_files = (
        (
            DesktopFile("config", UNITS_DIR / units.DAEMON_UNIT, _text(units.daemon_unit)),
            DesktopFile("config", UNITS_DIR / units.TRAY_UNIT, _text(units.tray_unit)),
        )
        if with_units
        else ()
    )
    return (
        *unit_files,
        DesktopFile(
            "config",
            PurePosixPath("autostart") / entries.AUTOSTART_ENTRY,
            _text(lambda target: entries.autostart_entry(target, tray_unit_enabled=with_units)),
        ),
        DesktopFile("data", APPLICATIONS_DIR / entries.LAUNCHER_ENTRY, _text(entries.launcher_entry)),
        DesktopFile(
            "data", HICOLOR_DIR / "scalable/apps" / f"{entries.ICON_NAME}.svg", _text(lambda _target: icon.icon_svg())
        ),
        *(
            DesktopFile("data", HICOLOR_DIR / f"{size}x{size}/apps" / f"{entries.ICON_NAME}.png", _png(size))
            for size in icon.PNG_SIZES
        ),
    )


def installed_unit_paths() -> tuple[Path, ...]:
    """Where a per-user install puts the units (install refuses to leave them beside an autostart-only tray;
    uninstall disables the ones it finds)."""
    return tuple(file.installed_path() for file in desktop_files(with_units=True) if file.relative.parent == UNITS_DIR)
