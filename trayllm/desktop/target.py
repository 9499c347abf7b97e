"""What the rendered files run: a command prefix, and the README that the units name as their documentation."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import trayllm
from trayllm.errors import TrayllmError


@dataclass(frozen=True)
class Target:
    """A command prefix that runs the trayllm CLI, plus the README to link from the units (None: no link).

    Everything rendered for one target differs from another target's rendering only in these two fields, so a
    distro package and a per-user install carry the same units and entries.
    """

    command: tuple[str, ...]
    readme: PurePosixPath | None

    def argv(self, *args: str) -> tuple[str, ...]:
        """The full command line of ``trayllm ARGS...`` for this target."""
        return (*self.command, *args)


# A distro package: the console script in /usr/bin, the README where Debian-style packages put docs.
DISTRO = Target(command=("/usr/bin/trayllm",), readme=PurePosixPath("/usr/share/doc/trayllm/README.md"))


def running_interpreter() -> Target:
    """This interpreter (``sys.executable -m trayllm``), so a per-user install runs the venv it was made from.

    The path is kept as given, not resolved: a venv's python is a link, and resolving it would leave the venv.
    """
    python = sys.executable
    if not python or not Path(python).is_absolute():
        raise TrayllmError(
            f"cannot tell which python runs trayllm (sys.executable is {python!r}); "
            "run `trayllm desktop install` from the installed `trayllm` command"
        )
    if any(ord(char) < 32 or ord(char) == 127 for char in python):
        raise TrayllmError(
            f"the python path {python!r} has a control character, which unit files and desktop "
            "entries cannot carry; install trayllm into a venv at a plain path"
        )
    return Target(command=(python, "-m", "trayllm"), readme=_checkout_readme())


def _checkout_readme() -> PurePosixPath | None:
    """The README of a source checkout (an editable install, what `make setup` makes); None for a wheel install,
    whose README is not on disk."""
    root = Path(trayllm.__file__).resolve().parent.parent
    readme = root / "README.md"
    return PurePosixPath(readme) if readme.is_file() and (root / "pyproject.toml").is_file() else None
