"""`trayllm desktop install` and `uninstall` end to end through the CLI, into the isolated XDG dirs.

A real user manager cannot run in this container (systemd is not PID 1 and there is no user bus), so
systemctl and the cache tools are recording stand-ins (the fake_tools fixture) and the tests check the exact
calls; the files themselves are the real ones, which the other tests in this folder validate.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from trayllm import cli
from trayllm.desktop.target import running_interpreter
from trayllm.desktop.units import daemon_unit

PNG_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)
ENABLED = (
    "enabled trayllm.service and trayllm-tray.service: the daemon starts at each login, the tray with each "
    "graphical session (`systemctl --user status trayllm`)"
)
UNDONE = "install undone: trayllm's files are as they were before"
ON_DEMAND = (
    "the tray starts from the autostart entry at the next login, and the daemon on demand (`trayllm up`, or "
    "the tray's Start daemon)"
)


def run(*args: str):
    return CliRunner().invoke(cli.cli, list(args), catch_exceptions=False)


def config_home() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"])


def data_home() -> Path:
    return Path(os.environ["XDG_DATA_HOME"])


def unit_paths() -> list[Path]:
    return [config_home() / "systemd/user/trayllm.service", config_home() / "systemd/user/trayllm-tray.service"]


def autostart_path() -> Path:
    return config_home() / "autostart/trayllm-tray.desktop"


def expected_paths(with_units: bool) -> list[Path]:
    """Where the spec puts each file, spelled out here rather than taken from trayllm.desktop.layout."""
    icons = data_home() / "icons/hicolor"
    return [
        *(unit_paths() if with_units else []),
        autostart_path(),
        data_home() / "applications/trayllm.desktop",
        icons / "scalable/apps/trayllm.svg",
        *(icons / f"{n}x{n}/apps/trayllm.png" for n in PNG_SIZES),
    ]


def files_under(*roots: Path) -> set[Path]:
    return {path for root in roots for path in root.rglob("*") if path.is_file()}


def update_desktop_database() -> str:
    return f"update-desktop-database -q {data_home() / 'applications'}"


def test_install_writes_each_file_where_the_spec_says_and_enables_the_units(fake_tools):
    calls = fake_tools()
    result = run("desktop", "install")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"wrote {path}" for path in expected_paths(with_units=True)] + [ENABLED]
    assert result.stderr == ""
    assert calls.read_text().splitlines() == [
        "systemctl --user show-environment",
        "systemctl --user daemon-reload",
        "systemctl --user enable trayllm.service trayllm-tray.service",
        update_desktop_database(),
    ]
    assert files_under(config_home(), data_home()) == set(expected_paths(with_units=True))
    assert unit_paths()[0].read_text() == daemon_unit(running_interpreter())
    assert f"ExecStart={sys.executable} -m trayllm daemon\n" in unit_paths()[0].read_text()
    assert "X-systemd-skip=true\n" in autostart_path().read_text()


def test_a_second_install_changes_nothing_and_says_so(fake_tools):
    fake_tools()
    run("desktop", "install")
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in expected_paths(with_units=True)}
    result = run("desktop", "install")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"unchanged {path}" for path in before] + [ENABLED]
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in before} == before


def test_install_start_enables_the_units_now(fake_tools):
    calls = fake_tools()
    result = run("desktop", "install", "--start")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == ENABLED.replace("enabled", "enabled and started", 1)
    assert "systemctl --user enable --now trayllm.service trayllm-tray.service" in calls.read_text().splitlines()


def test_without_a_user_manager_the_autostart_entry_starts_the_tray_and_no_units_are_written(fake_tools):
    calls = fake_tools(failing="systemctl --user show-environment")
    result = run("desktop", "install", "--start")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"wrote {path}" for path in expected_paths(with_units=False)] + [
        f"systemd's user manager is not reachable, so no units were installed: {ON_DEMAND}"
    ]
    assert result.stderr == "trayllm: warning: nothing was started: --start needs systemd's user manager\n"
    assert calls.read_text().splitlines() == ["systemctl --user show-environment", update_desktop_database()]
    assert not any(path.exists() for path in unit_paths())
    assert "X-systemd-skip" not in autostart_path().read_text()


def test_without_systemctl_on_path_it_is_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    result = run("desktop", "install")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("systemd's user manager is not reachable")
    assert files_under(config_home(), data_home()) == set(expected_paths(with_units=False))


def test_no_systemd_writes_no_units_and_an_entry_that_systemd_sessions_start(fake_tools):
    """Without the tray unit, X-systemd-skip=true would leave GNOME and Plasma sessions with no tray at all."""
    calls = fake_tools()
    result = run("desktop", "install", "--no-systemd")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"no systemd units (--no-systemd): {ON_DEMAND}"
    assert calls.read_text().splitlines() == [update_desktop_database()]
    assert files_under(config_home(), data_home()) == set(expected_paths(with_units=False))
    assert "X-systemd-skip" not in autostart_path().read_text()


def test_no_systemd_refuses_to_leave_units_from_an_earlier_install_beside_its_entry(fake_tools):
    fake_tools()
    run("desktop", "install")
    result = run("desktop", "install", "--no-systemd")
    assert result.exit_code == 1
    assert result.stderr == (
        f"trayllm: error: {unit_paths()[0]} is there from an install with systemd units, which "
        "this install cannot keep in step (--no-systemd); run `trayllm desktop uninstall` first\n"
    )
    assert "X-systemd-skip=true\n" in autostart_path().read_text()


def test_no_systemd_with_start_is_a_usage_error():
    result = run("desktop", "install", "--no-systemd", "--start")
    assert result.exit_code == 2
    assert "--start starts the systemd units, which --no-systemd leaves out" in result.stderr


def test_uninstall_disables_the_units_and_removes_exactly_the_installed_files(fake_tools):
    calls = fake_tools()
    foreign = [
        config_home() / "systemd/user/other.service",
        config_home() / "autostart/other.desktop",
        data_home() / "applications/other.desktop",
        data_home() / "icons/hicolor/48x48/apps/other.png",
    ]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not trayllm's")
    run("desktop", "install")
    calls.write_text("")
    result = run("desktop", "uninstall")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "disabled and stopped trayllm.service and trayllm-tray.service",
        *(f"removed {path}" for path in expected_paths(with_units=True)),
    ]
    assert calls.read_text().splitlines() == [
        "systemctl --user show-environment",
        "systemctl --user disable --now trayllm.service trayllm-tray.service",
        "systemctl --user daemon-reload",
        update_desktop_database(),
    ]
    assert files_under(config_home(), data_home()) == set(foreign)


def test_uninstall_with_nothing_installed_is_fine_and_calls_nothing(fake_tools):
    calls = fake_tools()
    result = run("desktop", "uninstall")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "nothing to remove: trayllm's desktop files are not installed\n"
    assert calls.read_text() == ""


def test_uninstall_refuses_units_it_cannot_disable(fake_tools):
    fake_tools()
    run("desktop", "install")
    fake_tools(failing="systemctl --user show-environment")
    result = run("desktop", "uninstall")
    assert result.exit_code == 1
    assert result.stderr == (
        "trayllm: error: systemd's user manager is not reachable, so trayllm's units cannot be "
        "disabled; run `trayllm desktop uninstall` in your desktop session\n"
    )
    assert all(path.exists() for path in expected_paths(with_units=True))


def test_an_existing_icon_cache_is_rebuilt_and_none_is_created(fake_tools):
    calls = fake_tools()
    hicolor = data_home() / "icons/hicolor"
    run("desktop", "install")
    assert "gtk-update-icon-cache" not in calls.read_text()
    (hicolor / "icon-theme.cache").write_bytes(b"")
    calls.write_text("")
    run("desktop", "uninstall")
    assert calls.read_text().splitlines()[-1] == f"gtk-update-icon-cache -q -f -t {hicolor}"


def test_a_failing_cache_tool_only_warns(fake_tools):
    fake_tools(failing=update_desktop_database())
    result = run("desktop", "install")
    assert result.exit_code == 0
    assert result.stderr == (
        f"trayllm: warning: `{update_desktop_database()}` failed with status 1 "
        f"({update_desktop_database()}: refused by the test); the desktop picks the change up "
        "at the next login at the latest\n"
    )


def test_a_directory_where_a_file_goes_is_a_one_line_error(fake_tools):
    fake_tools()
    blocker = data_home() / "applications/trayllm.desktop"
    blocker.mkdir(parents=True)
    result = run("desktop", "install")
    assert result.exit_code == 1
    assert result.stderr == (
        f"trayllm: error: {blocker} is a directory, where trayllm's file belongs; move it away "
        f"and install again ({UNDONE})\n"
    )
    assert files_under(config_home(), data_home()) == set()


def test_a_failed_write_undoes_the_install_and_leaves_what_was_there(fake_tools):
    """All or nothing: a regular file where the 256 px icon's directory must go fails the last write for real
    (as root, permissions would not). What the run wrote goes, a launcher entry it overwrote comes back as it
    was, the directories it created go, and files that are not trayllm's stay."""
    calls = fake_tools()
    older_entry = data_home() / "applications/trayllm.desktop"
    foreign = data_home() / "icons/hicolor/48x48/apps/other.png"
    blocker = data_home() / "icons/hicolor/256x256"
    for path, content in (
        (older_entry, "[Desktop Entry]\nExec=/old/venv/bin/python -m trayllm chat\n"),
        (foreign, "not trayllm's"),
        (blocker, "a file, where a directory must go"),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    before = {path: path.read_bytes() for path in files_under(config_home(), data_home())}
    result = run("desktop", "install", "--no-systemd")
    assert result.exit_code == 1
    png_256 = blocker / "apps/trayllm.png"
    assert result.stderr == (
        f"trayllm: error: cannot write {png_256} ({os.strerror(errno.ENOTDIR)}); fix that and "
        f"install again ({UNDONE})\n"
    )
    written = expected_paths(with_units=False)[:-1]  # all but the 256 px icon
    assert result.stdout.splitlines() == [f"wrote {path}" for path in written] + [
        f"{'restored' if path == older_entry else 'removed'} {path}" for path in reversed(written)
    ]
    assert {path: path.read_bytes() for path in files_under(config_home(), data_home())} == before
    assert not (config_home() / "autostart").exists() and not (data_home() / "icons/hicolor/16x16").exists()
    assert calls.read_text() == ""  # no cache refresh for an install that did not happen
    blocker.unlink()
    assert run("desktop", "install", "--no-systemd").exit_code == 0  # fixed, it installs


def test_a_failed_enable_removes_the_units_it_wrote(fake_tools):
    enable = "systemctl --user enable trayllm.service trayllm-tray.service"
    calls = fake_tools(failing=enable)
    result = run("desktop", "install")
    assert result.exit_code == 1
    assert result.stderr == (
        f"trayllm: error: `{enable}` failed with status 1 ({enable}: refused by the test); see "
        f"`systemctl --user status` and `journalctl --user -e` ({UNDONE})\n"
    )
    assert calls.read_text().splitlines() == [
        "systemctl --user show-environment",
        "systemctl --user daemon-reload",
        enable,
        "systemctl --user daemon-reload",
    ]
    assert list(config_home().iterdir()) == [] and list(data_home().iterdir()) == []


def test_a_failure_after_an_install_that_changed_nothing_has_nothing_to_undo(fake_tools):
    fake_tools()
    run("desktop", "install")
    before = {path: path.read_bytes() for path in expected_paths(with_units=True)}
    enable = "systemctl --user enable trayllm.service trayllm-tray.service"
    fake_tools(failing=enable)
    result = run("desktop", "install")
    assert result.exit_code == 1
    assert result.stderr.endswith("see `systemctl --user status` and `journalctl --user -e`\n")
    assert {path: path.read_bytes() for path in expected_paths(with_units=True)} == before


@pytest.mark.parametrize("python", ["", "python3", "/opt/new\nline/python"])
def test_a_python_path_no_entry_can_carry_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, python: str):
    monkeypatch.setattr(sys, "executable", python)
    result = run("desktop", "install", "--no-systemd")
    assert result.exit_code == 1
    assert result.stderr.startswith("trayllm: error: ") and result.stderr.count("\n") == 1
    assert files_under(config_home(), data_home()) == set()
