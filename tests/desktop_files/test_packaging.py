"""packaging/ holds exactly what scripts/build_packaging.py writes from trayllm.desktop, byte for byte for text
and pixel for pixel for the PNGs (PNG encoders may compress the same pixels differently)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from trayllm.desktop.icon import SVG_NAMESPACE
from trayllm.desktop.layout import desktop_files
from trayllm.desktop.target import DISTRO

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
FILES = desktop_files(with_units=True)
REGENERATE = "run `.venv/bin/python scripts/build_packaging.py` and commit packaging/"


def test_packaging_holds_the_generated_files_and_its_readme():
    committed = {path.relative_to(PACKAGING).as_posix() for path in PACKAGING.rglob("*") if path.is_file()}
    assert committed == {str(file.relative) for file in FILES} | {"README.md"}, REGENERATE


@pytest.mark.parametrize("file", [f for f in FILES if f.relative.suffix != ".png"], ids=lambda f: str(f.relative))
def test_each_committed_text_file_is_the_generators_output(file):
    assert (PACKAGING / file.relative).read_text() == file.render(DISTRO).decode(), REGENERATE


@pytest.mark.parametrize("file", [f for f in FILES if f.relative.suffix == ".png"], ids=lambda f: str(f.relative))
def test_each_committed_png_has_the_generators_pixels(file):
    committed = Image.open(PACKAGING / file.relative)
    generated = Image.open(io.BytesIO(file.render(DISTRO)))
    assert (committed.mode, committed.size) == (generated.mode, generated.size), REGENERATE
    assert ImageChops.difference(committed, generated).getbbox() is None, REGENERATE


def test_the_committed_files_name_no_web_host():
    for path in PACKAGING.rglob("*"):
        if path.is_file() and path.suffix != ".png":
            assert "://" not in path.read_text().replace("file:///", "").replace(f'"{SVG_NAMESPACE}"', ""), path
