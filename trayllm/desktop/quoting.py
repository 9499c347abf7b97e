"""Command lines as systemd and the desktop-entry spec read them, so that a path with spaces (or worse) survives.

Both formats split on spaces, take double quotes around a whole argument and give ``%`` a meaning
(specifiers in systemd, field codes in desktop entries); they differ in what else must be escaped.
Arguments carry no control characters (``target.running_interpreter`` refuses them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from trayllm.errors import TrayllmError

# Arguments made only of these characters need no quotes in either format.
_PLAIN = re.compile(r"[\w@+=:,./-]+", re.ASCII)
# systemd refuses to run a program whose path holds one of these, however it is quoted (string_is_safe()).
_UNSAFE_IN_SYSTEMD_PROGRAM = "\"'\\"


def systemd_value(text: str) -> str:
    """``text`` as a unit-file value that goes through specifier expansion: a literal ``%`` is written ``%%``."""
    return text.replace("%", "%%")


def _systemd_word(word: str) -> str:
    if not _PLAIN.fullmatch(word):
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return systemd_value(word)


def systemd_command(argv: Sequence[str]) -> str:
    """An ``ExecStart=`` value (systemd.syntax(7) quoting, systemd.service(5) command lines).

    A word with anything but plain characters is double-quoted, with C-style escapes for ``\\`` and ``"``, and
    ``%`` becomes ``%%`` (specifiers). In the arguments, ``$`` becomes ``$$``; the program's path is not
    subject to variable expansion, and systemd does not run a path with a quote or a backslash at all.
    """
    program, *args = argv
    if any(char in program for char in _UNSAFE_IN_SYSTEMD_PROGRAM):
        raise TrayllmError(
            f"systemd does not run a program whose path has a quote or a backslash ({program}); "
            "move the venv to a plainer path, or install with --no-systemd"
        )
    return " ".join([_systemd_word(program), *(_systemd_word(arg).replace("$", "$$") for arg in args)])


def desktop_exec(argv: Sequence[str]) -> str:
    """An ``Exec=`` value (Desktop Entry Specification, "The Exec key").

    An argument with a reserved character is double-quoted, with ``"``, `````, ``$`` and ``\\`` escaped by a
    backslash; ``%`` becomes ``%%`` (field codes). Last, the spec's string escaping doubles every backslash,
    which is why a literal ``$`` in a quoted path is written ``\\\\$`` in the file.
    """
    words = []
    for arg in argv:
        if not _PLAIN.fullmatch(arg):
            arg = '"' + re.sub(r'(["`$\\])', r"\\\1", arg) + '"'
        words.append(arg.replace("%", "%%"))
    return " ".join(words).replace("\\", "\\\\")
