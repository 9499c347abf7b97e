"""packaging/ holds exactly what scripts/build_packaging.py writes from trayllm.desktop, byte for byte (the PNGs
are copies of the package's icons/, which test_icons.py compares with the drawing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trayllm.desktop.icon import SVG_NAMESPACE
from trayllm.desktop.layout import desktop_files
from trayllm.desktop.target import DISTRO

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
FILES = desktop_files(with_units=True)
REGENERATE = "run `.venv/bin/python scripts/build_packaging.py` and commit packaging/"


def test_packaging_holds_the_generated_files_and_its_readme():
    committed = {path.relative_to(PACKAGING).as_posix() for path in PACKAGING.rglob("*") if path.is_file()}
    assert committed == {str(file.relative) for file in FILES} | {"README.md"}, REGENERATE


@pytest.mark.parametrize("file", FILES, ids=lambda f: str(f.relative))
def test_each_committed_file_is_the_generators_output(file):
    assert (PACKAGING / file.relative).read_bytes() == file.render(DISTRO), REGENERATE


def test_the_committed_files_name_no_web_host():
    for path in PACKAGING.rglob("*"):
        if path.is_file() and path.suffix != ".png":
            assert "://" not in path.read_text().replace("file:///", "").replace(f'"{SVG_NAMESPACE}"', ""), path
