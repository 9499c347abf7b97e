"""The INI-style text of systemd units and desktop entries: a comment header, then ``[Section]`` and ``Key=Value``.

Both formats are read line by line, so one writer serves both; values arrive already escaped for their format.
"""

from __future__ import annotations

from collections.abc import Sequence

Section = tuple[str, Sequence[tuple[str, str]]]

# The first comment of every rendered file: where it comes from, so nobody edits a copy that gets overwritten.
ORIGIN = "Written by `trayllm desktop install` (for packages: scripts/build_packaging.py); a reinstall overwrites it."


def key_file(sections: Sequence[Section], notes: Sequence[str] = ()) -> str:
    """The text of a key file: ``ORIGIN`` and ``notes`` as comments, then the sections, one blank line apart."""
    blocks = ["\n".join(f"# {line}" for line in (ORIGIN, *notes))]
    for name, entries in sections:
        blocks.append("\n".join([f"[{name}]", *(f"{key}={value}" for key, value in entries)]))
    return "\n\n".join(blocks) + "\n"
