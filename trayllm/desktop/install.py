"""``trayllm desktop install`` and ``uninstall`` for the current user: the files, then systemd and the caches.

An install is in one of two modes, and its files always agree with the mode:

- **systemd**: the user manager is reachable (and ``--no-systemd`` was not given). Both units are written and
  enabled; the autostart entry carries ``X-systemd-skip=true``, so only non-systemd sessions use it.
- **autostart**: no units at all; the autostart entry (without that key) starts the tray at login, and the
  daemon starts on demand. Units written here could not be enabled, and an entry that skipped systemd
  sessions would then start nothing there. Units left from an earlier systemd install are refused with a
  pointer to uninstall, for the same reason: nothing would keep them and the entry consistent.

Install is all or nothing: when a write or a systemctl call fails, what this run wrote is taken back (new files
removed, overwritten ones restored, see ``changes``) before the error is reported. Refreshing the desktop's
caches comes last and only warns, so it never undoes an install.
"""

from __future__ import annotations

from collections.abc import Callable

from trayllm.desktop.caches import refresh_caches
from trayllm.desktop.changes import Changes
from trayllm.desktop.layout import APPLICATIONS_DIR, HICOLOR_DIR, base_dir, desktop_files, installed_unit_paths
from trayllm.desktop.systemd import systemctl, user_manager_reachable
from trayllm.desktop.target import running_interpreter
from trayllm.desktop.tools import run_tool
from trayllm.desktop.units import DAEMON_UNIT, TRAY_UNIT, UNITS
from trayllm.desktop.writing import remove_file
from trayllm.errors import TrayllmError

Report = Callable[[str], None]

ON_DEMAND = (
    "the tray starts from the autostart entry at the next login, and the daemon on demand "
    "(`trayllm up`, or the tray's Start daemon)"
)
NOT_REACHABLE = f"systemd's user manager is not reachable, so no units were installed: {ON_DEMAND}"
NO_SYSTEMD = f"no systemd units (--no-systemd): {ON_DEMAND}"


def install(*, use_systemd: bool, start: bool, say: Report, warn: Report) -> None:
    """Write every file for the running interpreter, enable the units (and start them with ``start``), and
    refresh the desktop's caches. Files already up to date are left alone and reported "unchanged"."""
    target = running_interpreter()
    with_units = use_systemd and user_manager_reachable()
    if not with_units:
        _refuse_leftover_units("--no-systemd" if not use_systemd else "systemd's user manager is not reachable")
    changes = Changes()
    try:
        for file in desktop_files(with_units=with_units):
            path = file.installed_path()
            say(f"{'wrote' if changes.write(path, file.render(target)) else 'unchanged'} {path}")
        if with_units:
            systemctl("daemon-reload")
            systemctl("enable", *(["--now"] if start else []), *UNITS)
    except BaseException as exc:  # Ctrl-C included: no half install either way
        outcome = _undo(changes, with_units, say, warn)
        if outcome is None or not isinstance(exc, TrayllmError):
            raise
        raise TrayllmError(f"{exc.message} ({outcome})") from None
    if with_units:
        say(
            f"{'enabled and started' if start else 'enabled'} {DAEMON_UNIT} and {TRAY_UNIT}: the daemon starts "
            "at each login, the tray with each graphical session (`systemctl --user status trayllm`)"
        )
    else:
        say(NO_SYSTEMD if not use_systemd else NOT_REACHABLE)
        if start:
            warn("nothing was started: --start needs systemd's user manager")
    _refresh_caches(warn)


def uninstall(*, say: Report, warn: Report) -> None:
    """Disable and stop the units, then remove exactly the files an install writes; fine when none are there."""
    units_found = [path for path in installed_unit_paths() if path.exists()]
    if units_found:
        if not user_manager_reachable():
            raise TrayllmError(
                "systemd's user manager is not reachable, so trayllm's units cannot be disabled; "
                "run `trayllm desktop uninstall` in your desktop session"
            )
        names = [path.name for path in units_found]
        systemctl("disable", "--now", *names)
        say(f"disabled and stopped {' and '.join(names)}")
    removed = 0
    for file in desktop_files(with_units=True):
        path = file.installed_path()
        if remove_file(path):
            say(f"removed {path}")
            removed += 1
    if units_found:
        systemctl("daemon-reload")
    if removed:
        _refresh_caches(warn)
    else:
        say("nothing to remove: trayllm's desktop files are not installed")


def _undo(changes: Changes, with_units: bool, say: Report, warn: Report) -> str | None:
    """Take back what a failed install wrote; how that went, for the error message (None: nothing was written)."""
    if not changes:
        return None
    problems = changes.undo(say)
    if with_units:  # the manager may have loaded units that this run wrote and undo removed
        failure = run_tool(["systemctl", "--user", "daemon-reload"])
        if failure:
            warn(failure)
    if problems:
        return f"undoing the install failed too: {'; '.join(problems)}"
    return "install undone: trayllm's files are as they were before"


def _refuse_leftover_units(reason: str) -> None:
    """Stop an install without units where units from an earlier install are still there."""
    for path in installed_unit_paths():
        if path.exists():
            raise TrayllmError(
                f"{path} is there from an install with systemd units, which this install cannot "
                f"keep in step ({reason}); run `trayllm desktop uninstall` first"
            )


def _refresh_caches(warn: Report) -> None:
    data = base_dir("data")
    refresh_caches(data / APPLICATIONS_DIR, data / HICOLOR_DIR, warn)
