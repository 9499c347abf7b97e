"""A base install: the wheel built from this checkout, installed with no extras (httpx, pydantic, click and
python-json-logger at the lock's versions) into a bare venv, and run there as a user would run it.

Every command either works (help, doctor, desktop install) or says in one line which extra to install; none
ends in a traceback. The development venv has every extra, so only a separate venv can show this.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "trayllm" / "desktop" / "icons"
PNG_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)
ONE_LINE_EXTRA = re.compile(
    r"trayllm: error: [^\n]* needs the '(\w+)' extra \(no module named '\w+'\): "
    r"pip install 'trayllm\[\1\]'\n"
)


def _run(*command: str | Path, cwd: Path | None = None) -> None:
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bin/ of a venv holding trayllm's wheel and its base dependencies, nothing else (not even pip)."""
    work = tmp_path_factory.mktemp("base-install")
    source = work / "source"  # built from a copy: setuptools writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT / "trayllm", source / "trayllm", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [ROOT / "pyproject.toml", ROOT / "README.md", *ROOT.glob("LICENSE*")]:
        shutil.copy2(path, source)
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        work / "dist",
        source,
    )
    [wheel] = (work / "dist").glob("trayllm-*.whl")
    venv = work / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "--quiet",
        "--constraint",
        ROOT / "requirements" / "run.txt",
        wheel,
    )
    yield venv / "bin"


def trayllm(bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``trayllm`` with this test's XDG dirs (tests/conftest.py), a home of its own, and no
    setting from the developer's shell."""
    base = {name: os.environ[name] for name in os.environ if name.startswith("XDG_") or name in ("LANG", "LC_ALL")}
    home = Path(os.environ["XDG_CONFIG_HOME"]).parent / "home"
    home.mkdir(exist_ok=True)
    environ = {**base, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(home), **env}
    return subprocess.run(
        [str(bin_dir / "trayllm"), *args],
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_venv_has_only_the_base_dependencies(bare_venv: Path):
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps([d.metadata['Name'].lower() for d in m.distributions()]))"
    )
    listing = subprocess.run([str(bare_venv / "python"), "-c", code], capture_output=True, text=True, check=True)
    installed = set(json.loads(listing.stdout))
    assert {"trayllm", "httpx", "pydantic", "click", "python-json-logger"} <= installed
    assert not installed & {"torch", "pyside6-essentials", "pillow", "nvidia-ml-py", "elasticsearch", "pystray"}


def test_help_lists_the_commands(bare_venv: Path):
    result = trayllm(bare_venv, "--help")
    assert result.returncode == 0, result.stderr
    assert "doctor" in result.stdout and "desktop" in result.stdout and result.stderr == ""


def test_doctor_reports_no_nvml_and_still_recommends(bare_venv: Path):
    result = trayllm(bare_venv, "doctor")
    assert result.returncode == 0, result.stderr
    assert (
        "GPU       none found: no NVIDIA driver / NVML (nvidia-ml-py is not installed: pip install 'trayllm[gpu]')"
    ) in result.stdout.splitlines()
    assert "torch     not installed" in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1].startswith("recommendation: no NVIDIA GPU: trayllm runs on the CPU.")
    assert "Traceback" not in result.stderr


def test_desktop_install_copies_the_packaged_icons_without_pillow(bare_venv: Path):
    data = Path(os.environ["XDG_DATA_HOME"])
    result = trayllm(bare_venv, "desktop", "install", "--no-systemd")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for size in PNG_SIZES:
        installed = data / f"icons/hicolor/{size}x{size}/apps/trayllm.png"
        assert installed.read_bytes() == (ICONS / f"trayllm-{size}.png").read_bytes()
    assert (data / "icons/hicolor/scalable/apps/trayllm.svg").is_file()
    entry = (data / "applications/trayllm.desktop").read_text()
    assert f"Exec={bare_venv / 'python'} -m trayllm chat --window\n" in entry
    assert (Path(os.environ["XDG_CONFIG_HOME"]) / "autostart/trayllm-tray.desktop").is_file()
    removed = trayllm(bare_venv, "desktop", "uninstall")
    assert removed.returncode == 0, removed.stderr
    assert not (data / "applications/trayllm.desktop").exists()


@pytest.mark.parametrize(
    ("args", "env", "extra"),
    [
        pytest.param(["daemon"], {}, "daemon", id="daemon"),
        pytest.param(["bench", "telemetry", "0"], {}, "daemon", id="bench"),
        pytest.param(["chat", "--window"], {"DISPLAY": ":99"}, "gui", id="chat-window"),
        pytest.param(["tray"], {}, "gui", id="tray"),
        pytest.param(["ship", "--once", "--es-url", "http://127.0.0.1:9"], {}, "elastic", id="ship"),
        pytest.param(["elastic", "setup", "--es-url", "http://127.0.0.1:9"], {}, "elastic", id="elastic-setup"),
    ],
)
def test_a_command_that_needs_an_extra_names_it_in_one_line(
    bare_venv: Path, args: list[str], env: dict[str, str], extra: str
):
    result = trayllm(bare_venv, *args, **env)
    assert (result.returncode, result.stdout) == (1, "")
    assert ONE_LINE_EXTRA.fullmatch(result.stderr), result.stderr
    assert f"pip install 'trayllm[{extra}]'" in result.stderr
