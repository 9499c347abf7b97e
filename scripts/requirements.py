"""Requirement lines for the Makefile's range checks, read from pyproject.toml and the lock.

    python scripts/requirements.py latest            every dependency, newest release
    python scripts/requirements.py oldest NAME...    NAME at the lowest release pyproject.toml allows
    python scripts/requirements.py prune LOCK...     drop the entries requirements/overrides.txt rules out

`latest` drops upper bounds, so that `make test-latest` warns about a release the bounds keep out. It keeps
exclusions of known-bad releases (``!=``), the locked torch (a newer one is a CUDA build of several GB), and
the bounds that follow something other than a release of the library: PyGObject's, the libgirepository that
Debian 12 ships; the Elasticsearch client's, the major version of the cluster it talks to.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("daemon", "elastic", "gui", "dev")
KEPT_BOUNDS = {"pygobject", "elasticsearch"}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9._-]+)\s*([^;]*?)\s*(;.*)?$")


def declared(extras: tuple[str, ...] = EXTRAS) -> list[str]:
    """The base dependencies and those of ``extras``, as written in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return lines


def locked_torch() -> str:
    """The torch line of the test lock."""
    for line in (ROOT / "requirements" / "test.txt").read_text().splitlines():
        if line.startswith("torch=="):
            return line.split(";")[0].strip()
    raise SystemExit("requirements/test.txt has no torch line: run make lock")


def latest() -> list[str]:
    out = [locked_torch()]
    for line in declared():
        name, spec, marker = _REQUIREMENT.match(line).groups()
        if name.lower() == "torch":
            continue
        if name.lower() in KEPT_BOUNDS:
            out.append(line)
            continue
        kept = ",".join(s.strip() for s in spec.split(",") if s.strip().startswith((">", "!=")))
        out.append(f"{name}{kept}{(' ' + marker) if marker else ''}")
    return out


def oldest(names: list[str]) -> list[str]:
    wanted = {n.lower() for n in names}
    out = []
    for line in declared():
        name, spec, _ = _REQUIREMENT.match(line).groups()
        if name.lower() not in wanted:
            continue
        lower = [s.strip()[2:] for s in spec.split(",") if s.strip().startswith(">=")]
        if not lower:
            raise SystemExit(f"{name} has no lower bound in pyproject.toml")
        out.append(f"{name}=={lower[0]}")
        wanted.discard(name.lower())
    if wanted:
        raise SystemExit(f"not declared in pyproject.toml: {', '.join(sorted(wanted))}")
    return out


NEVER = "sys_platform == 'never'"


def prune(path: Path) -> None:
    """Remove each entry whose marker is the overrides' never-marker, with its '# via' lines.

    uv keeps an overridden-away package (and what only it pulls in) as a line no platform installs;
    the lock is easier to read, and to check, without them.
    """
    kept: list[str] = []
    skipping = False
    for line in path.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            skipping = line.split(";", 1)[-1].strip() == NEVER
        if not skipping:
            kept.append(line)
    path.write_text("\n".join(kept) + "\n")


def main(argv: list[str]) -> None:
    if argv[:1] == ["latest"] and len(argv) == 1:
        print(*latest(), sep="\n")
    elif argv[:1] == ["oldest"] and len(argv) > 1:
        print(*oldest(argv[1:]), sep="\n")
    elif argv[:1] == ["prune"] and len(argv) > 1:
        for name in argv[1:]:
            prune(Path(name))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
