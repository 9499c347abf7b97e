"""Draw the PNG icons into trayllm/desktop/icons/ and write packaging/ (systemd user units, desktop entries,
icons) for a distro install from trayllm.desktop.

    .venv/bin/python scripts/build_packaging.py [OUT_DIR]

The PNGs need Pillow to draw, which `trayllm desktop install` must not need, so they are package data: drawn
here, committed, and copied by install and into packaging/. A PNG is rewritten only when its pixels change, so
another Pillow version (which may compress the same pixels differently) leaves the committed files alone.
The files in packaging/ run /usr/bin/trayllm; packaging/README.md says where each one goes. Run this after
changing anything in trayllm/desktop/: tests/desktop_files/test_packaging.py and test_icons.py fail while the
committed copies differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trayllm.desktop.icon import PACKAGED_DIR, PNG_SIZES, draw_png, packaged_png_name, same_pixels
from trayllm.desktop.layout import desktop_files
from trayllm.desktop.target import DISTRO
from trayllm.desktop.writing import write_atomic

ROOT = Path(__file__).resolve().parent.parent
PACKAGING_DIR = ROOT / "packaging"
ICONS_DIR = ROOT / "trayllm" / "desktop" / PACKAGED_DIR


def draw_icons() -> None:
    """Bring the packaged PNGs in step with the drawing, keeping a file whose pixels are already right."""
    for size in PNG_SIZES:
        path = ICONS_DIR / packaged_png_name(size)
        drawn = draw_png(size)
        if path.is_file() and same_pixels(path.read_bytes(), drawn):
            print(f"unchanged {path}")
        else:
            write_atomic(path, drawn)
            print(f"wrote {path}")


def main(argv: list[str]) -> None:
    out_dir = Path(argv[0]) if argv else PACKAGING_DIR
    draw_icons()
    for file in desktop_files(with_units=True):
        path = out_dir / file.relative
        print(f"{'wrote' if write_atomic(path, file.render(DISTRO)) else 'unchanged'} {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
