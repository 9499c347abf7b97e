"""ServingEngine: the local engine, the remote one and the tests' fake all have every member the daemon uses, as
it uses them; and the interface (and the remote engine) load no torch, so a daemon or a test can hold an engine
without a model."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine

from trayllm.config import load_settings
from trayllm.engine.engine import Engine
from trayllm.engine.interface import ServingEngine
from trayllm.engine.remote import RemoteEngine

TESTS = Path(__file__).resolve().parent.parent


def protocol_members(protocol: type) -> dict[str, Any]:
    """Each member's declaration: a function, a property, or None for a plain attribute."""
    members: dict[str, Any] = dict.fromkeys(protocol.__annotations__)
    members.update({name: value for name, value in vars(protocol).items() if not name.startswith("_")})
    return members


def shape(function: Any) -> list[tuple[str, Any, Any, Any]]:
    """A signature as names, kinds, defaults and annotations (strings here: both modules defer them)."""
    return [(p.name, p.kind, p.default, p.annotation) for p in inspect.signature(function).parameters.values()]


def declared_types(cls: type) -> dict[str, Any]:
    """The class's annotated attributes, its bases' included (a dataclass's fields, say)."""
    types: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        types.update(vars(klass).get("__annotations__", {}))
    return types


def mismatches(engine: object, protocol: type) -> list[str]:
    """What ``engine`` lacks of ``protocol``, or has in another shape: a method's signature, or the type of an
    attribute or property where the class declares one (a plain attribute set in ``__init__`` declares none)."""
    found = []
    for name, declared in protocol_members(protocol).items():
        own = inspect.getattr_static(type(engine), name, None)
        if not hasattr(engine, name):
            found.append(f"{name}: missing")
        elif inspect.isfunction(declared):
            if not (inspect.isfunction(own) and shape(own) == shape(declared)):
                found.append(
                    f"{name}: {inspect.signature(own) if own else 'not a method'} is not {inspect.signature(declared)}"
                )
        else:
            wanted = (
                declared.fget.__annotations__["return"]
                if isinstance(declared, property)
                else protocol.__annotations__[name]
            )
            got = (
                own.fget.__annotations__.get("return")
                if isinstance(own, property)
                else declared_types(type(engine)).get(name)
            )
            if got is not None and got != wanted:
                found.append(f"{name}: {got} is not {wanted}")
    return found


@pytest.fixture
def engines() -> Iterator[dict[str, object]]:
    settings = load_settings({"warmup": False, "engine_url": "http://127.0.0.1:9/v1"}, environ={})
    remote = RemoteEngine(settings)
    yield {"Engine": Engine(settings), "FakeEngine": FakeEngine(settings), "RemoteEngine": remote}  # none started
    remote.stop()


@pytest.mark.parametrize("kind", ["Engine", "FakeEngine", "RemoteEngine"])
def test_the_engine_has_every_member_of_the_interface_in_its_shape(engines: dict[str, object], kind: str) -> None:
    assert mismatches(engines[kind], ServingEngine) == []


def test_the_check_finds_a_missing_member_a_changed_signature_and_a_changed_type() -> None:
    class Drifted(FakeEngine):
        def admit(self, user: str, cost: int) -> None: ...  # type: ignore[override]

        @property
        def in_flight(self) -> str:  # type: ignore[override]
            return ""

    assert mismatches(Drifted(load_settings({}, environ={})), ServingEngine) == [
        "in_flight: str is not int",
        "admit: (self, user: 'str', cost: 'int') -> 'None' is not (self, user: 'str') -> 'None'",
    ]
    assert set(mismatches(object(), ServingEngine)) == {f"{name}: missing" for name in protocol_members(ServingEngine)}


def test_the_interface_the_remote_engine_and_the_fake_engine_load_no_torch() -> None:
    code = (
        "import sys, trayllm.engine.interface, trayllm.engine.remote, fake_engine; "
        "print(sorted(name for name in sys.modules if name.partition('.')[0] == 'torch'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin"},
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
