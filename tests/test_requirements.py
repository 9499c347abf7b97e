"""The lock in requirements/ against pyproject.toml: what make installs is what the project declares."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
PYTHON_3_10 = {"python_version": "3.10", "python_full_version": "3.10.0"}
CUDA_RUNTIME = re.compile(r"^(nvidia-(?!ml-py$)|cuda-|triton$)")


def _script():
    spec = importlib.util.spec_from_file_location("requirements_script", ROOT / "scripts" / "requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def locked(name: str) -> dict[str, Requirement]:
    """The lock's entries by canonical name (each must be one exact pin)."""
    entries: dict[str, Requirement] = {}
    for line in (REQUIREMENTS / name).read_text().splitlines():
        if not line or line.startswith((" ", "#")):
            continue
        req = Requirement(line)
        key = canonicalize_name(req.name)
        assert key not in entries, f"{name}: {req.name} locked twice (one version for every Python is the point)"
        entries[key] = req
    return entries


@pytest.mark.parametrize("lock", ["run.txt", "test.txt"])
def test_every_entry_is_one_exact_pin_with_no_cuda_runtime(lock: str) -> None:
    entries = locked(lock)
    assert len(entries) > 40
    for key, req in entries.items():
        (spec,) = req.specifier
        assert spec.operator == "==", f"{lock}: {req} is not an exact pin"
        assert not CUDA_RUNTIME.match(key), f"{lock}: {req} is torch's CUDA runtime; see requirements/overrides.txt"


@pytest.mark.parametrize(
    ("lock", "extras"), [("run.txt", ("daemon", "elastic", "gui")), ("test.txt", ("daemon", "elastic", "gui", "dev"))]
)
def test_lock_holds_every_declared_dependency_within_its_range(lock: str, extras: tuple[str, ...]) -> None:
    entries = locked(lock)
    for req in map(Requirement, _script().declared(extras)):
        if req.marker is not None and not req.marker.evaluate(PYTHON_3_10) and not req.marker.evaluate():
            continue
        pin = entries.get(canonicalize_name(req.name))
        assert pin is not None, f"{lock} lacks {req.name}, which pyproject.toml declares: run make lock"
        (version,) = [s.version for s in pin.specifier]
        assert req.specifier.contains(version, prereleases=True), f"{lock}: {pin} is outside {req}: run make lock"


def test_run_lock_is_the_test_lock_less_the_dev_tools() -> None:
    run, test = locked("run.txt"), locked("test.txt")
    assert run.keys() <= test.keys()
    differ = {k: (str(run[k]), str(test[k])) for k in run if run[k].specifier != test[k].specifier}
    assert differ == {}, "the app must run on the versions the tests ran on"


def test_torch_is_locked_to_the_overrides_pin() -> None:
    overrides = [
        Requirement(line)
        for line in (REQUIREMENTS / "overrides.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    (torch,) = [r for r in overrides if r.name == "torch"]
    for lock in ("run.txt", "test.txt"):
        assert str(locked(lock)["torch"].specifier) == str(torch.specifier)
    never = [r for r in overrides if r.name != "torch"]
    assert never and all(r.marker == Marker("sys_platform == 'never'") for r in never)


def test_prune_drops_never_entries_and_their_via_lines(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text(
        "# header\nanyio==4.0\n    # via httpx\ntriton==3.7.1 ; sys_platform == 'never'\n"
        "    # via torch\nnvidia-cublas==13 ; sys_platform == 'never'\n    # via\n    #   cuda-toolkit\n"
        "torch==2.13.0\n    # via trayllm\n"
    )
    _script().prune(lock)
    assert lock.read_text() == "# header\nanyio==4.0\n    # via httpx\ntorch==2.13.0\n    # via trayllm\n"


def test_latest_drops_upper_bounds_but_keeps_exclusions_torch_and_platform_bounds() -> None:
    lines = {Requirement(line).name.lower(): line for line in _script().latest()}
    assert lines["torch"] == str(locked("test.txt")["torch"]).split(";")[0].strip()
    assert "<" not in lines["transformers"] and ">=" in lines["transformers"]
    assert "<" not in lines["uvicorn"]
    assert "!=6.12.0" in lines["pyside6-essentials"] and "<" not in lines["pyside6-essentials"]
    assert "<3.51" in lines["pygobject"] and "<9" in lines["elasticsearch"]


def test_oldest_is_each_lower_bound() -> None:
    script = _script()
    pins = script.oldest(["transformers", "uvicorn"])
    assert [Requirement(p).name for p in pins] == ["transformers", "uvicorn"]
    for pin in pins:
        (spec,) = Requirement(pin).specifier
        declared = next(Requirement(d) for d in script.declared() if Requirement(d).name == Requirement(pin).name)
        assert spec.operator == "==" and declared.specifier.contains(spec.version)
        assert not any(s.operator in (">=", ">") and s.version > spec.version for s in declared.specifier)
    with pytest.raises(SystemExit, match="not declared"):
        script.oldest(["no-such-package"])
