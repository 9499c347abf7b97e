"""Write packaging/ (systemd user units, desktop entries, icons) for a distro install from trayllm.desktop.

    .venv/bin/python scripts/build_packaging.py [OUT_DIR]

The files run /usr/bin/trayllm; packaging/README.md says where each one goes. Run it after changing anything
in trayllm/desktop/: tests/desktop_files/test_packaging.py fails while the committed copies differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trayllm.desktop.layout import desktop_files
from trayllm.desktop.target import DISTRO
from trayllm.desktop.writing import write_atomic

PACKAGING_DIR = Path(__file__).resolve().parent.parent / "packaging"


def main(argv: list[str]) -> None:
    out_dir = Path(argv[0]) if argv else PACKAGING_DIR
    for file in desktop_files(with_units=True):
        path = out_dir / file.relative
        print(f"{'wrote' if write_atomic(path, file.render(DISTRO)) else 'unchanged'} {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
