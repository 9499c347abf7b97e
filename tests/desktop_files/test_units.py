"""The systemd user units: what they say, and that systemd-analyze accepts them without a word."""

from __future__ import annotations

import configparser
import sys
from pathlib import Path, PurePosixPath

import pytest

from trayllm.config import Settings
from trayllm.desktop.quoting import systemd_command
from trayllm.desktop.target import DISTRO, Target, running_interpreter
from trayllm.desktop.units import daemon_unit, tray_unit
from trayllm.errors import TrayllmError

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"


def write_units(directory: Path, target: Target) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "trayllm.service", directory / "trayllm-tray.service"]
    paths[0].write_text(daemon_unit(target))
    paths[1].write_text(tray_unit(target))
    return paths


def parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_the_daemon_unit_restarts_on_failure_and_gives_the_daemon_time_to_stop():
    unit = parse(daemon_unit(DISTRO))
    service = unit["Service"]
    assert (service["Type"], service["ExecStart"], service["ExecReload"]) == (
        "exec",
        "/usr/bin/trayllm daemon",
        "/usr/bin/trayllm reload --timeout 600",
    )
    assert (service["Restart"], service["RestartSec"], service["Environment"]) == (
        "on-failure",
        "5s",
        "PYTHONUNBUFFERED=1",
    )
    assert int(service["TimeoutStopSec"].removesuffix("s")) >= Settings.shutdown_grace_s + 10
    assert int(service["TimeoutStartSec"].removesuffix("s")) > 600  # ExecReload= runs under this bound
    assert unit["Unit"]["Description"] and unit["Unit"]["Documentation"] == "file:///usr/share/doc/trayllm/README.md"
    assert unit["Install"]["WantedBy"] == "default.target"


def test_the_tray_unit_belongs_to_the_graphical_session_and_wants_the_daemon():
    unit = parse(tray_unit(DISTRO))
    assert dict(unit["Unit"]) | {"Description": "", "Documentation": ""} == {
        "Description": "",
        "Documentation": "",
        "PartOf": "graphical-session.target",
        "After": "graphical-session.target trayllm.service",
        "Wants": "trayllm.service",
        "StartLimitIntervalSec": "5min",
        "StartLimitBurst": "5",
    }
    assert (unit["Service"]["ExecStart"], unit["Service"]["Restart"]) == ("/usr/bin/trayllm tray", "on-failure")
    assert unit["Install"]["WantedBy"] == "graphical-session.target"


def test_units_for_this_interpreter_pass_systemd_analyze_verify(tmp_path: Path, unit_problems):
    paths = write_units(tmp_path, running_interpreter())
    assert f"ExecStart={sys.executable} -m trayllm daemon\n" in paths[0].read_text()
    assert unit_problems(paths) == ""


def test_the_committed_units_pass_verify_once_they_run_this_interpreter(tmp_path: Path, unit_problems):
    """/usr/bin/trayllm does not exist here, and verify checks that ExecStart's program does: swap it for this
    interpreter in copies of the committed text (test_packaging.py checks that text against the generator)."""
    paths = []
    for name in ("trayllm.service", "trayllm-tray.service"):
        committed = (PACKAGING / "systemd/user" / name).read_text()
        assert "/usr/bin/trayllm " in committed
        paths.append(tmp_path / name)
        paths[-1].write_text(
            committed.replace(systemd_command(DISTRO.command), systemd_command(running_interpreter().command))
        )
    assert unit_problems(paths) == ""


def test_a_python_path_with_spaces_dollars_and_percents_survives(tmp_path: Path, unit_problems):
    """verify checks that ExecStart's program exists, so it passes only if the quoted path unquotes to the real
    one; the README link carries a space and a % too (a file: URL, percent-encoded, then %-escaped)."""
    odd_dir = tmp_path / "my venv $HOME 100%n"
    odd_dir.mkdir()
    python = odd_dir / "python"
    python.symlink_to(sys.executable)
    target = Target(command=(str(python), "-m", "trayllm"), readme=PurePosixPath(odd_dir / "READ ME.md"))
    paths = write_units(tmp_path / "units", target)
    assert unit_problems(paths) == ""
    assert parse(paths[0].read_text())["Service"]["ExecStart"] == f'"{odd_dir}/python" -m trayllm daemon'.replace(
        "%", "%%"
    )


@pytest.mark.parametrize("char", ['"', "'", "\\"])
def test_a_python_path_systemd_would_not_run_is_a_one_line_error(char: str):
    """systemd refuses a program path with a quote or a backslash, quoted or not (string_is_safe())."""
    target = Target(command=(f"/opt/odd{char}dir/python", "-m", "trayllm"), readme=None)
    with pytest.raises(TrayllmError, match=r"^systemd does not run a program .* install with --no-systemd$"):
        daemon_unit(target)


def test_the_check_reports_a_broken_unit(tmp_path: Path, unit_problems):
    """The verify check can fail: a value systemd does not know is reported, although verify exits 0 on it."""
    [daemon, tray] = write_units(tmp_path, running_interpreter())
    daemon.write_text(daemon.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    problems = unit_problems([daemon, tray])
    assert "sometimes" in problems
