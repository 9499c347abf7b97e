"""`trayllm config edit`: the config file in the user's editor, replaced only by a copy that loads.

As with `crontab -e` or `kubectl edit`, the user edits a private copy beside the file (so the final rename is
atomic), and the file changes only when the editor succeeds and the copy passes the checks load_settings applies.
Nothing the user typed is lost to a mistake: an invalid copy is reopened or kept as ``<file>.rejected``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trayllm import config, config_text
from trayllm.errors import ConfigError

# tried in order on PATH when neither VISUAL nor EDITOR is set (sensible-editor and editor: Debian's choice)
FALLBACK_EDITORS = ("sensible-editor", "editor", "nano", "vi")
_UNSET = object()  # a setting the file does not set, unlike any value it can set


def find_editor(environ: Mapping[str, str] | None = None) -> list[str]:
    """The editor command: $VISUAL, then $EDITOR (either may carry arguments, as in ``code --wait``), then the
    first of FALLBACK_EDITORS on PATH."""
    environ = os.environ if environ is None else environ
    for var in ("VISUAL", "EDITOR"):
        value = environ.get(var, "").strip()
        if value:
            try:
                return shlex.split(value)
            except ValueError as exc:
                raise ConfigError(f"{var}={value!r} is not a command line ({exc}); fix its quoting") from None
    for name in FALLBACK_EDITORS:
        found = shutil.which(name, path=environ.get("PATH"))
        if found:
            return [found]
    raise ConfigError("no editor found: set VISUAL or EDITOR (say, `export EDITOR=nano`)")


@dataclass(frozen=True)
class EditResult:
    """How an edit ended: ``saved``, ``unchanged`` (the file was left as it was) or ``starter`` (there was no file
    and the starter file came back untouched, so none was written); ``changed`` lists, in field order, the settings
    whose value in the file differs from before."""

    outcome: Literal["saved", "unchanged", "starter"]
    changed: tuple[str, ...] = ()

    def overriding_variables(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """The TRAYLLM_* variables set in ``environ`` that hide a change just made to the file: they still win."""
        environ = os.environ if environ is None else environ
        return [config.env_name(name) for name in self.changed if config.env_name(name) in environ]


def edit_config(path: Path, editor: Sequence[str], edit_again: Callable[[ConfigError], bool]) -> EditResult:
    """Open ``path`` (or, if it does not exist, the starter file) in ``editor`` and save the result if it is valid.

    An invalid edit is offered back through ``edit_again`` (the CLI asks at a terminal and says no otherwise); on
    no it is kept as ``<path>.rejected`` and ConfigError says so. The editor failing discards the edit, as
    `git commit` does (``:cq`` in vi is the way to abort). A symlinked config file keeps its link: the file it
    points to is replaced.
    """
    target = path.resolve()
    before = target.read_bytes() if target.is_file() else None
    original = config_text.starter_config().encode() if before is None else before
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".toml", dir=target.parent)
    copy = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(original)
        while True:
            _run_editor(editor, copy)
            edited = copy.read_bytes()
            if edited == original:
                return EditResult("unchanged" if before is not None else "starter")
            try:
                values = config.parse_config(edited, str(path))
            except ConfigError as exc:
                if edit_again(exc):
                    continue
                rejected = target.with_name(target.name + ".rejected")
                os.chmod(copy, 0o600)  # it may hold a secret, in a new file the editor wrote with the umask's mode
                os.replace(copy, rejected)
                raise ConfigError(f"{exc.message}; {path} is unchanged, your edit is kept in {rejected}") from None
            _install(copy, target)
            return EditResult("saved", _changed(before, values))
    finally:
        copy.unlink(missing_ok=True)


def set_setting(path: Path, name: str, value: str | int | float | bool) -> None:
    """Write ``name = value`` into the config file for a command that changes one setting (`trayllm use`), keeping
    every other line and comment: the line that sets it is replaced, else it goes under the starter file's
    commented-out line for it, else before the first table. As with an edit, the result must load before it
    replaces the file (atomically, 0600); without a file, the starter file is written with the one line set."""
    target = path.resolve()
    lines = (target.read_text() if target.is_file() else config_text.starter_config()).split("\n")
    tables = [i for i, line in enumerate(lines) if line.lstrip().startswith("[")]
    end = tables[0] if tables else len(lines) - (lines[-1] == "")
    key = re.escape(name)
    sets, commented = re.compile(rf"\s*{key}\s*="), re.compile(rf"\s*#\s*{key}\s*=")
    new = f"{name} = {config_text.toml_value(value)}"
    at = next((i for i in range(end) if sets.match(lines[i])), None)
    if at is not None:
        lines[at] = new
    else:
        below = next((i + 1 for i in range(end) if commented.match(lines[i])), end)
        lines.insert(below, new)
    text = "\n".join(lines)
    config.parse_config(text.encode(), str(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".toml", dir=target.parent)
    copy = Path(tmp_name)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        _install(copy, target)
    finally:
        copy.unlink(missing_ok=True)


def _run_editor(editor: Sequence[str], file: Path) -> None:
    try:
        process = subprocess.Popen([*editor, str(file)])
    except OSError as exc:
        raise ConfigError(f"cannot run the editor {editor[0]!r} ({exc.strerror}); set VISUAL or EDITOR") from None
    # Ctrl-C belongs to the editor (vi and nano use it); trayllm must not die and leave it on the terminal
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        status = process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    if status != 0:
        raise ConfigError(f"the editor exited with status {status}; nothing was saved")


def _install(copy: Path, target: Path) -> None:
    """Make the checked copy the config file: private (it may hold es_password or es_api_key, and an editor that
    writes a new file gives it the umask's mode), on disk, then renamed over the old file in one step."""
    os.chmod(copy, 0o600)
    with copy.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(copy, target)


def _changed(before: bytes | None, after: dict[str, object]) -> tuple[str, ...]:
    """Settings whose value in the file differs between ``before`` and ``after`` (set, unset or changed)."""
    try:
        old = config.parse_config(before, "") if before is not None else {}
    except ConfigError:  # the old file did not load: every setting the new one has is news
        old = {}
    return tuple(f.name for f in config.SETTING_FIELDS if old.get(f.name, _UNSET) != after.get(f.name, _UNSET))
