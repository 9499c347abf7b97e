"""A stand-in for `systemctl --user` that really runs trayllm.service's daemon, for tests of the launcher.

A real user manager cannot run in this container (no systemd as PID 1, no user bus). This one keeps the part
the launcher relies on: `start` runs the unit's ExecStart= line, read from the installed unit file, as a
detached process (output to `<state>/unit.log`); `is-active` answers from whether that process lives;
`show-environment`, `daemon-reload`, `enable` and `disable` succeed and do nothing more. Every call is
appended to $FAKE_SYSTEMCTL_LOG. `install(bin_dir)` writes it as an executable `systemctl`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from waiting import gone  # this file's directory, tests/, is on sys.path when it runs as systemctl

UNIT_DIR = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "systemd" / "user"
STATE = Path(os.environ.get("FAKE_SYSTEMCTL_STATE", "/nonexistent"))


def install(bin_dir: Path) -> Path:
    """Write ``bin_dir/systemctl`` running this module with this interpreter; returns it."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "systemctl"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(__file__)} "$@"\n')
    script.chmod(0o755)
    return script


def _exec_start(unit: str) -> list[str]:
    for line in (UNIT_DIR / unit).read_text().splitlines():
        if line.startswith("ExecStart="):
            return shlex.split(line.removeprefix("ExecStart="))
    raise SystemExit(f"{unit} has no ExecStart=")


def _alive(unit: str) -> bool:
    pid_file = STATE / f"{unit}.pid"
    return pid_file.exists() and not gone(int(pid_file.read_text()))


def main(args: list[str]) -> int:
    with open(os.environ["FAKE_SYSTEMCTL_LOG"], "a") as log:
        log.write(" ".join(args) + "\n")
    if args[:1] != ["--user"]:
        return 1
    verb, *rest = args[1:]
    units = [a for a in rest if not a.startswith("-")]
    if verb in ("show-environment", "daemon-reload", "enable", "disable"):
        return 0
    if verb == "start":
        STATE.mkdir(parents=True, exist_ok=True)
        for unit in units:
            with (STATE / "unit.log").open("ab") as out:
                process = subprocess.Popen(
                    _exec_start(unit),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            (STATE / f"{unit}.pid").write_text(str(process.pid))
        return 0
    if verb == "is-active":
        return 0 if all(_alive(u) for u in units) else 3
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
