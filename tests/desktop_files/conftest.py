"""Fixtures for the desktop-file tests: the two validators, and recording stand-ins for the tools install runs.

The validators are the real tools (systemd-analyze, desktop-file-validate; `make test` installs them). A test
skips only where one is missing, and says which package brings it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

# QtSvg renders the SVG icon in test_icons.py, without a screen
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

Check = Callable[[list[Path]], str]


def _checker(tool: str, package: str, *args: str) -> Check:
    """A check that runs ``tool ARGS PATHS`` and returns what it reported: "" when it exited 0 in silence."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is missing (apt-get install {package}; `make test` installs it)")

    def check(paths: list[Path]) -> str:
        result = subprocess.run([tool, *args, *map(str, paths)], capture_output=True, text=True, timeout=60)
        report = (result.stdout + result.stderr).strip()
        return f"exit status {result.returncode}: {report}" if result.returncode or report else ""

    return check


@pytest.fixture
def unit_problems() -> Check:
    """``systemd-analyze --user verify``; it only warns about unknown keys and bad values, so any output counts
    as a problem. It needs $XDG_RUNTIME_DIR (a 0700 dir), which the isolated_xdg fixture provides."""
    return _checker("systemd-analyze", "systemd", "--user", "verify")


@pytest.fixture
def entry_problems() -> Check:
    """``desktop-file-validate``, which prints hints and errors; any output counts as a problem."""
    return _checker("desktop-file-validate", "desktop-file-utils")


FAKE_TOOL = """#!/bin/sh
echo "$(basename "$0") $*" >> '{log}'
if [ "$(basename "$0") $*" = "{failing}" ]; then
    echo "{failing}: refused by the test" >&2
    exit 1
fi
"""
FAKED_TOOLS = ("systemctl", "update-desktop-database", "gtk-update-icon-cache")


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Put recording stand-ins for systemctl and the cache tools first on PATH; returns the file their calls
    go to, one line each ("systemctl --user daemon-reload"). ``failing`` names the one call that exits 1;
    calling the factory again swaps the stand-ins (and so the failing call), keeping the record.

    A real user manager cannot run in this container (no systemd as PID 1, no user session bus), so the
    systemctl side of install and uninstall is checked by the exact calls it makes.
    """
    bin_dir = tmp_path / "fake-bin"
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def install_fakes(failing: str = "") -> Path:
        bin_dir.mkdir(exist_ok=True)
        log.touch()
        for tool in FAKED_TOOLS:
            script = bin_dir / tool
            script.write_text(FAKE_TOOL.format(log=log, failing=failing))
            script.chmod(0o755)
        return log

    return install_fakes
