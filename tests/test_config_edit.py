"""`trayllm config edit` with a real editor process: a small Python script set as VISUAL that edits the file it
is given, as an editor does. The config file changes only for a valid edit; an invalid one is kept."""

from __future__ import annotations

import json
import os
import shlex
import socket
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from trayllm import cli, config, config_edit, config_text
from trayllm.errors import ConfigError


def run(*args: str):
    return CliRunner().invoke(cli.cli, ["config", "edit", *args], catch_exceptions=False)


@pytest.fixture
def config_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "conf" / "config.toml"
    monkeypatch.setenv("TRAYLLM_CONFIG", str(path))
    return path


@pytest.fixture
def use_editor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Set VISUAL to a Python script whose ``body`` edits ``path``, the file it was given. Every run also leaves
    a copy of what the editor opened in ``opened/N.toml`` and its arguments in ``argv.json``."""

    def use(body: str, *args: str) -> Path:
        script = tmp_path / "editor.py"
        script.write_text(
            "import json, sys\nfrom pathlib import Path\n"
            "path = Path(sys.argv[-1])\n"
            f"opened = Path({str(tmp_path / 'opened')!r})\n"
            "opened.mkdir(exist_ok=True)\n"
            "run = len(list(opened.iterdir())) + 1\n"
            "(opened / f'{run}.toml').write_bytes(path.read_bytes())\n"
            f"Path({str(tmp_path / 'argv.json')!r}).write_text(json.dumps(sys.argv[1:]))\n" + textwrap.dedent(body)
        )
        monkeypatch.setenv("VISUAL", shlex.join([sys.executable, str(script), *args]))
        monkeypatch.setenv("EDITOR", "false")  # VISUAL wins
        return tmp_path / "opened"

    return use


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "config.toml")


def test_the_starter_file_lists_every_setting_and_is_not_saved_untouched(config_path: Path, use_editor):
    opened = use_editor("")
    result = run()
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"not saved: the starter file came back unchanged, so {config_path} still does not exist\n"
    assert (opened / "1.toml").read_text() == config_text.starter_config()
    assert not config_path.exists()
    assert _leftovers(config_path.parent) == []


def test_a_valid_edit_is_saved_private_and_loads(config_path: Path, use_editor, monkeypatch: pytest.MonkeyPatch):
    opened = use_editor("""
        text = path.read_text().replace("# max_batch = 8", "max_batch = 6")
        path.write_text(text + "temperature = 0.5\\n")
    """)
    monkeypatch.setenv("TRAYLLM_MAX_BATCH", "2")  # set here, so the new max_batch has no effect yet
    monkeypatch.setenv("TRAYLLM_TOP_P", "0.5")  # set too, but top_p was not edited
    result = run()
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"saved {config_path}\n"
    assert result.stderr == "trayllm: note: TRAYLLM_MAX_BATCH, set in this environment, still override the file\n"
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
    assert config_path.read_text().startswith(config_text.starter_config().replace("# max_batch = 8", "max_batch = 6"))
    settings = config.load_settings(environ={})
    assert (settings.max_batch, settings.temperature) == (6, 0.5)
    assert (opened / "1.toml").read_text() == config_text.starter_config()
    assert _leftovers(config_path.parent) == []


def test_an_unchanged_file_is_left_alone(config_path: Path, use_editor):
    config_path.parent.mkdir()
    config_path.write_text("max_batch = 4\n")
    config_path.chmod(0o644)
    use_editor("")
    result = run()
    assert (result.exit_code, result.stdout) == (0, f"unchanged: {config_path}\n")
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("added", "message"),
    [
        (
            "max_batchh = 4",
            ":3: unknown setting 'max_batchh' (did you mean 'max_batch'? `trayllm config show` lists them all)",
        ),
        ('max_batch = "lots"', ":3: max_batch must be a int, got 'lots'"),
        ("max_batch = 0", ":3: max_batch must be at least 1, got 0"),
    ],
)
def test_an_invalid_edit_is_kept_beside_the_untouched_file(config_path: Path, use_editor, added: str, message: str):
    config_path.parent.mkdir()
    config_path.write_text("# mine\nmodel = '/m.gguf'\n")
    use_editor(f"path.write_text(path.read_text() + {added + chr(10)!r})")
    result = run()  # stdin is not a terminal: no second chance, exit 1
    rejected = config_path.with_name("config.toml.rejected")
    assert result.exit_code == 1
    assert result.stderr == (
        f"trayllm: error: {config_path}{message}; {config_path} is unchanged, your edit is kept in {rejected}\n"
    )
    assert config_path.read_text() == "# mine\nmodel = '/m.gguf'\n"
    assert rejected.read_text() == f"# mine\nmodel = '/m.gguf'\n{added}\n"
    assert _leftovers(config_path.parent) == ["config.toml.rejected"]


def test_a_rejected_edit_is_kept_private_like_the_file(config_path: Path, use_editor):
    use_editor("""
        import os
        path.unlink()  # as editors that write a new file do: it gets the umask's mode
        os.umask(0o022)
        path.write_text('es_password = "hunter2"\\nmax_batch = 0\\n')
    """)
    result = run()
    rejected = config_path.with_name("config.toml.rejected")
    assert result.exit_code == 1 and "kept in" in result.stderr
    assert "hunter2" in rejected.read_text() and stat.S_IMODE(rejected.stat().st_mode) == 0o600


def test_an_invalid_edit_is_reopened_with_the_users_text_until_it_is_valid(config_path: Path, use_editor):
    config_path.parent.mkdir()
    config_path.write_text("model = '/m.gguf'\n")
    opened = use_editor("""
        text = path.read_text()
        if "bogus" in text:  # the second time: fix the mistake, keep the rest
            path.write_text(text.replace("bogus = 1", "max_batch = 3"))
        else:
            path.write_text(text + "temperature = 0.5\\nbogus = 1\\n")
    """)
    asked: list[str] = []

    def edit_again(error: ConfigError) -> bool:
        asked.append(error.message)
        return True

    result = config_edit.edit_config(config_path, config_edit.find_editor(), edit_again)
    assert asked == [f"{config_path}:3: unknown setting 'bogus' (`trayllm config show` lists them all)"]
    assert (opened / "2.toml").read_text() == "model = '/m.gguf'\ntemperature = 0.5\nbogus = 1\n"
    assert result == config_edit.EditResult("saved", ("max_batch", "temperature"))
    assert config_path.read_text() == "model = '/m.gguf'\ntemperature = 0.5\nmax_batch = 3\n"
    assert _leftovers(config_path.parent) == []


def test_a_broken_file_can_be_fixed_with_edit(config_path: Path, use_editor):
    config_path.parent.mkdir()
    config_path.write_text("max_batch = 0\n")
    use_editor("path.write_text('max_batch = 2\\n')")
    result = run()
    assert result.exit_code == 0, result.stderr
    assert config.load_settings().max_batch == 2


def test_a_failing_editor_changes_nothing(config_path: Path, use_editor):
    config_path.parent.mkdir()
    config_path.write_text("max_batch = 4\n")
    use_editor("path.write_text('max_batch = 5\\n'); sys.exit(3)")
    result = run()
    assert result.exit_code == 1
    assert result.stderr == "trayllm: error: the editor exited with status 3; nothing was saved\n"
    assert config_path.read_text() == "max_batch = 4\n"
    assert _leftovers(config_path.parent) == []


def test_visual_may_carry_arguments(config_path: Path, use_editor, tmp_path: Path):
    use_editor("", "--wait", "--new-window")
    assert run().exit_code == 0
    *flags, file = json.loads((tmp_path / "argv.json").read_text())
    assert flags == ["--wait", "--new-window"]
    assert Path(file).parent == config_path.parent  # the copy lies beside the file: the rename is atomic
    assert Path(file).name.startswith(".config.toml.") and file.endswith(".toml")


def test_a_symlinked_config_keeps_its_link(config_path: Path, use_editor, tmp_path: Path):
    dotfiles = tmp_path / "dotfiles" / "trayllm.toml"
    dotfiles.parent.mkdir()
    dotfiles.write_text("max_batch = 4\n")
    config_path.parent.mkdir()
    config_path.symlink_to(dotfiles)
    use_editor("path.write_text('max_batch = 5\\n')")
    assert run().exit_code == 0
    assert config_path.is_symlink() and dotfiles.read_text() == "max_batch = 5\n"


def test_a_running_daemon_is_told_to_restart(config_path: Path, use_editor, tmp_path: Path):
    use_editor("path.write_text('max_batch = 5\\n')")
    sock_path = tmp_path / "d.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(sock_path))
        result = CliRunner().invoke(cli.cli, ["--socket", str(sock_path), "config", "edit"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "trayllm: restart the daemon to apply (`trayllm down && trayllm up`)\n"


def test_no_editor_is_one_line(config_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.delenv("EDITOR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    result = run()
    assert result.exit_code == 1
    assert result.stderr == "trayllm: error: no editor found: set VISUAL or EDITOR (say, `export EDITOR=nano`)\n"
    assert not config_path.parent.exists()


def test_find_editor_order(tmp_path: Path):
    for name in ("vi", "nano"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    path = str(tmp_path)
    assert config_edit.find_editor({"PATH": path}) == [str(tmp_path / "nano")]
    assert config_edit.find_editor({"PATH": path, "EDITOR": "vim -u NONE"}) == ["vim", "-u", "NONE"]
    assert config_edit.find_editor({"PATH": path, "EDITOR": "vim", "VISUAL": "'my editor' --wait"}) == [
        "my editor",
        "--wait",
    ]
    assert config_edit.find_editor({"PATH": path, "VISUAL": "  ", "EDITOR": "ed"}) == ["ed"]
    with pytest.raises(ConfigError, match=r"^VISUAL='code \"--wait' is not a command line"):
        config_edit.find_editor({"VISUAL": 'code "--wait'})


def test_an_editor_that_cannot_start_is_one_line(config_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VISUAL", "/nonexistent/editor")
    result = run()
    assert result.exit_code == 1
    assert result.stderr == (
        "trayllm: error: cannot run the editor '/nonexistent/editor' (No such file or "
        "directory); set VISUAL or EDITOR\n"
    )
    assert os.listdir(config_path.parent) == []  # not even a temporary copy


def test_set_setting_changes_one_line_and_keeps_the_rest(tmp_path: Path):
    from trayllm.config_edit import set_setting

    path = tmp_path / "config.toml"
    path.write_text('# my settings\nqueue_size = 5  # busy box\nmodel = "/old"\n')
    set_setting(path, "model", "/new")
    assert path.read_text() == '# my settings\nqueue_size = 5  # busy box\nmodel = "/new"\n'
    path.write_text("# my settings\nqueue_size = 5\n")
    set_setting(path, "model", "org/name")
    assert path.read_text() == '# my settings\nqueue_size = 5\nmodel = "org/name"\n'
    assert oct(path.stat().st_mode & 0o777) == "0o600"

    fresh = tmp_path / "new" / "config.toml"  # no file yet: the starter file, with the line under its comment
    set_setting(fresh, "model", "")
    lines = fresh.read_text().splitlines()
    assert lines[lines.index('# model = ""') + 1] == 'model = ""' and load_settings_from(fresh)["model"] == ""


def load_settings_from(path: Path) -> dict:
    from trayllm.config import parse_config

    return parse_config(path.read_bytes(), str(path))
