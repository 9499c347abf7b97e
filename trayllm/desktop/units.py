"""The systemd user units: ``trayllm.service`` runs the daemon, ``trayllm-tray.service`` the tray icon.

The daemon belongs to the user's manager (``default.target``: it starts at login, graphical or not, like
Ollama's service); the tray belongs to the graphical session (``graphical-session.target``), and stops with it.
"""

from __future__ import annotations

import math

from trayllm.config import Settings
from trayllm.desktop.keyfile import Section, key_file
from trayllm.desktop.quoting import systemd_command, systemd_value
from trayllm.desktop.target import Target

DAEMON_UNIT = "trayllm.service"
TRAY_UNIT = "trayllm-tray.service"
UNITS = (DAEMON_UNIT, TRAY_UNIT)

# `trayllm reload` waits this long for the new load; systemd bounds ExecReload= by TimeoutStartSec=, so that
# one gets a minute more, and the reload command reports its own timeout first.
RELOAD_TIMEOUT_S = 600
# On SIGTERM the daemon lets requests finish for shutdown_grace_s, then cancels them and frees the model;
# systemd waits that long plus this margin before it sends SIGKILL.
STOP_MARGIN_S = 20
# A unit that keeps failing (a bad setting, a model that does not load) stops being restarted after this many
# starts within this window, instead of loading the model in a loop; `systemctl --user reset-failed` re-arms it.
START_LIMIT = (5, "5min")


def daemon_unit(target: Target) -> str:
    """trayllm.service: the daemon, restarted when it fails, stopped with time to finish its requests.

    TimeoutStopSec= follows the default shutdown_grace_s; a user who raises that setting raises it with
    `systemctl --user edit trayllm.service` too.
    """
    stop_timeout_s = math.ceil(Settings.shutdown_grace_s + STOP_MARGIN_S)
    return key_file(
        [
            _unit_section(target, "trayllm daemon: a local LLM served on a private socket", []),
            (
                "Service",
                [
                    ("Type", "exec"),
                    ("ExecStart", systemd_command(target.argv("daemon"))),
                    ("ExecReload", systemd_command(target.argv("reload", "--timeout", str(RELOAD_TIMEOUT_S)))),
                    ("Restart", "on-failure"),
                    ("RestartSec", "5s"),
                    ("TimeoutStartSec", f"{RELOAD_TIMEOUT_S + 60}s"),
                    ("TimeoutStopSec", f"{stop_timeout_s}s"),
                    ("Environment", "PYTHONUNBUFFERED=1"),
                ],
            ),
            ("Install", [("WantedBy", "default.target")]),
        ],
        notes=[_local_changes(DAEMON_UNIT)],
    )


def tray_unit(target: Target) -> str:
    """trayllm-tray.service: the tray icon, for as long as the graphical session runs.

    It wants the daemon because a user who enables the tray expects a model behind it (the tray could start a
    daemon itself, but one under systemd is restarted and logged to the journal), and is ordered after it so
    the first icon is not a needless "no daemon".
    """
    return key_file(
        [
            _unit_section(
                target,
                "trayllm tray icon: the daemon's health, a menu and alert notifications",
                [
                    ("PartOf", "graphical-session.target"),
                    ("After", f"graphical-session.target {DAEMON_UNIT}"),
                    ("Wants", DAEMON_UNIT),
                ],
            ),
            (
                "Service",
                [
                    ("Type", "exec"),
                    ("ExecStart", systemd_command(target.argv("tray"))),
                    ("Restart", "on-failure"),
                    ("RestartSec", "5s"),
                    ("Environment", "PYTHONUNBUFFERED=1"),
                ],
            ),
            ("Install", [("WantedBy", "graphical-session.target")]),
        ],
        notes=[_local_changes(TRAY_UNIT)],
    )


def _local_changes(unit: str) -> str:
    return f"Local changes go into a drop-in, which a reinstall keeps: `systemctl --user edit {unit}`."


def _unit_section(target: Target, description: str, dependencies: list[tuple[str, str]]) -> Section:
    """[Unit]: description, documentation (when the target has a README on disk), dependencies, start limit."""
    documentation = [("Documentation", systemd_value(target.readme.as_uri()))] if target.readme else []
    burst, interval = START_LIMIT
    return (
        "Unit",
        [
            ("Description", description),
            *documentation,
            *dependencies,
            ("StartLimitIntervalSec", interval),
            ("StartLimitBurst", str(burst)),
        ],
    )
