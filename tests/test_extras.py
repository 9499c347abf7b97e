"""trayllm.extras against the package's own metadata and imports: every optional module names the extra that
really installs it, no third-party import escapes the table, and a missing one is a one-line MissingExtra."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import trayllm
from trayllm.extras import EXTRA_OF, MissingExtra, missing_extra, pip_install, require_extra

PACKAGE = Path(trayllm.__file__).parent


def declared() -> dict[str, set[str]]:
    """Canonical distribution names by extra ("" for the base install), from the installed trayllm's metadata;
    markers are read for Python 3.10, the oldest supported, so tomli counts as a base dependency."""
    metadata = importlib.metadata.metadata("trayllm")
    extras = ["", *(metadata.get_all("Provides-Extra") or [])]
    by_extra: dict[str, set[str]] = {extra: set() for extra in extras}
    for req in map(Requirement, metadata.get_all("Requires-Dist") or []):
        for extra in extras:
            if req.marker is None or req.marker.evaluate({"extra": extra, "python_version": "3.10"}):
                by_extra[extra].add(canonicalize_name(req.name))
    return by_extra


def distributions_of(module: str) -> set[str]:
    """The distributions that install ``module`` here; one of the same name when none does (say, bitsandbytes on a
    machine without CUDA)."""
    return {canonicalize_name(d) for d in importlib.metadata.packages_distributions().get(module, [module])}


@pytest.mark.parametrize(("module", "extra"), sorted(EXTRA_OF.items()))
def test_each_module_comes_with_the_extra_it_names(module: str, extra: str):
    assert distributions_of(module) & declared()[extra], f"{module} is not installed by trayllm[{extra}]"


def test_trayllm_imports_no_third_party_module_outside_the_base_install_and_the_table():
    """What a base install lacks must be in EXTRA_OF, or the command that imports it would end in a traceback."""
    base = declared()[""]
    imported: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                else []
            )
            for name in names:
                imported.setdefault(name.partition(".")[0], str(path.relative_to(PACKAGE.parent)))
    third_party = {
        m: where
        for m, where in imported.items()
        if m not in sys.stdlib_module_names and m not in ("trayllm", "__future__")
    }
    outside = {
        m: where
        for m, where in third_party.items()
        if m not in EXTRA_OF and not distributions_of(m) & base and canonicalize_name(m) not in base
    }
    assert outside == {}, "add these to trayllm.extras.EXTRA_OF (module -> extra)"


def test_a_missing_optional_module_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "pystray", None)  # how Python spells "cannot be imported"
    with pytest.raises(MissingExtra) as caught, require_extra("trayllm tray"):
        import pystray  # noqa: F401
    assert caught.value.message == (
        "trayllm tray needs the 'gui' extra (no module named 'pystray'): pip install 'trayllm[gui]'"
    )
    assert (caught.value.extra, caught.value.module) == ("gui", "pystray")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_other_import_failures_keep_their_own_error():
    """A module outside the table, or a submodule of one in it, is a bug or a broken install, not an extra."""
    for name in ("no_such_module_anywhere", "PIL.no_such_submodule"):
        with pytest.raises(ModuleNotFoundError), require_extra("x"):
            __import__(name)
    assert missing_extra(ImportError("cannot import name 'x' from 'torch'", name="torch"), "x") is None
    assert pip_install("elastic") == "pip install 'trayllm[elastic]'"
