"""The launcher icon: PNGs at every size with alpha, shipped as drawn, and an SVG that a real renderer draws like
the PNGs."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from trayllm.desktop import icon
from trayllm.desktop.icon import PNG_SIZES, SVG_NAMESPACE, draw_png, icon_image, icon_svg, same_pixels


@pytest.mark.parametrize("size", PNG_SIZES)
def test_each_png_has_its_size_and_an_alpha_channel(size: int):
    image = Image.open(io.BytesIO(draw_png(size)))
    assert (image.format, image.size, image.mode) == ("PNG", (size, size), "RGBA")
    alpha = image.getchannel("A")
    assert alpha.getpixel((0, 0)) == 0  # a transparent corner...
    assert alpha.getpixel((size // 2, size // 2)) == 255  # ...around an opaque disc


def test_the_pngs_are_the_same_on_every_render():
    assert draw_png(48) == draw_png(48)


@pytest.mark.parametrize("size", PNG_SIZES)
def test_the_packaged_png_is_the_drawing(size: int):
    """Install copies trayllm/desktop/icons/ (no Pillow at install time); those files must be what the shapes
    draw today."""
    assert same_pixels(icon.packaged_png(size), draw_png(size)), "run `.venv/bin/python scripts/build_packaging.py`"


def test_the_package_ships_one_png_per_size_and_nothing_else():
    shipped = Path(icon.__file__).parent / icon.PACKAGED_DIR
    assert {path.name for path in shipped.iterdir()} == {icon.packaged_png_name(size) for size in PNG_SIZES}


def test_pngs_with_one_pixel_apart_are_not_the_same():
    image = Image.open(io.BytesIO(draw_png(16)))
    image.putpixel((0, 0), (1, 2, 3, 4))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    assert not same_pixels(buffer.getvalue(), draw_png(16))
    assert same_pixels(buffer.getvalue(), buffer.getvalue())


def test_the_svg_is_an_svg_document_on_the_tray_icons_64_unit_grid():
    root = ET.fromstring(icon_svg())
    assert root.tag == f"{{{SVG_NAMESPACE}}}svg"
    assert (root.get("viewBox"), root.get("width"), root.get("height")) == ("0 0 64 64", "64", "64")
    assert len(root) > 1  # the disc and the chat mark on it


@pytest.mark.parametrize("size", [64, 256])
def test_qtsvg_draws_the_svg_like_the_png(qapp, size: int):
    """Both formats come from one list of shapes; this checks the two renderers read it the same way (shape
    positions, ring width, opacity). Edges differ by antialiasing only: compared premultiplied, the mean
    difference stays under 2 of 255."""
    from PySide6.QtCore import QByteArray
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(QByteArray(icon_svg().encode()))
    assert renderer.isValid()
    drawn = QImage(size, size, QImage.Format.Format_RGBA8888_Premultiplied)
    drawn.fill(0)
    painter = QPainter(drawn)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    svg_pixels = Image.frombytes("RGBa", (size, size), bytes(drawn.constBits()))
    difference = ImageChops.difference(svg_pixels, icon_image(size).convert("RGBa"))
    assert max(ImageStat.Stat(difference).mean) < 2
