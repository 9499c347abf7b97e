"""The desktop entries: what they say, that desktop-file-validate accepts them in silence, and Exec quoting."""

from __future__ import annotations

import configparser
import sys
from pathlib import Path, PurePosixPath

import pytest

from trayllm.desktop.entries import autostart_entry, launcher_entry
from trayllm.desktop.target import DISTRO, Target, running_interpreter

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"


def desktop_entry(text: str) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return dict(parser["Desktop Entry"])


def exec_argv(path: Path) -> list[str]:
    """The argv GLib launches for the entry at ``path``, in GIO's own steps: the key file's string unescaping,
    field codes (only ``%%`` occurs here), then shell-style unquoting."""
    glib = pytest.importorskip("gi.repository.GLib", reason="needs PyGObject (the gui extra; `make test`)")
    key_file = glib.KeyFile()
    key_file.load_from_file(str(path), glib.KeyFileFlags.NONE)
    exec_value = key_file.get_string("Desktop Entry", "Exec")
    return list(glib.shell_parse_argv(exec_value.replace("%%", "%"))[1])


def test_the_launcher_opens_the_chat_window_under_the_name_qt_gives_it():
    entry = desktop_entry(launcher_entry(DISTRO))
    assert entry["Exec"] == "/usr/bin/trayllm chat --window"
    assert (entry["Type"], entry["Name"], entry["Icon"], entry["Terminal"]) == (
        "Application",
        "trayllm",
        "trayllm",
        "false",
    )
    assert (entry["Categories"], entry["StartupWMClass"]) == ("Utility;", "trayllm")
    assert entry["GenericName"] and entry["Comment"] and entry["Keywords"].endswith(";")


@pytest.mark.parametrize("tray_unit_enabled", [True, False])
def test_the_autostart_entry_skips_systemd_only_beside_an_enabled_tray_unit(tray_unit_enabled: bool):
    entry = desktop_entry(autostart_entry(DISTRO, tray_unit_enabled=tray_unit_enabled))
    assert entry["Exec"] == "/usr/bin/trayllm tray"
    assert (entry["NoDisplay"], entry["X-GNOME-Autostart-enabled"]) == ("true", "true")
    assert entry.get("X-systemd-skip") == ("true" if tray_unit_enabled else None)


def test_entries_for_this_interpreter_pass_desktop_file_validate(tmp_path: Path, entry_problems):
    target = running_interpreter()
    texts = {
        "trayllm.desktop": launcher_entry(target),
        "with-unit/trayllm-tray.desktop": autostart_entry(target, tray_unit_enabled=True),
        "alone/trayllm-tray.desktop": autostart_entry(target, tray_unit_enabled=False),
    }
    for name, text in texts.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert desktop_entry(texts["trayllm.desktop"])["Exec"] == f"{sys.executable} -m trayllm chat --window"
    assert entry_problems([tmp_path / name for name in texts]) == ""


def test_the_committed_entries_pass_desktop_file_validate(entry_problems):
    paths = [PACKAGING / "applications/trayllm.desktop", PACKAGING / "autostart/trayllm-tray.desktop"]
    assert entry_problems(paths) == ""


def test_a_python_path_with_every_reserved_character_survives(tmp_path: Path, entry_problems):
    odd_python = "/opt/my venv/$HOME \"q\" 's' `b` \\back 100% #(x);|&<>*?~/python"
    target = Target(command=(odd_python, "-m", "trayllm"), readme=PurePosixPath("/nowhere/README.md"))
    path = tmp_path / "trayllm.desktop"
    path.write_text(launcher_entry(target))
    assert entry_problems([path]) == ""
    assert exec_argv(path) == [odd_python, "-m", "trayllm", "chat", "--window"]


def test_the_check_reports_a_broken_entry(tmp_path: Path, entry_problems):
    """The validate check can fail: an entry without its required Name is reported."""
    path = tmp_path / "trayllm.desktop"
    path.write_text(launcher_entry(running_interpreter()).replace("Name=trayllm\n", ""))
    assert "Name" in entry_problems([path])
