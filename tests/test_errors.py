"""The one table of error kinds: every RequestError class names its record error.type and its budget flag, and
the record schema, the SLO objectives and docs/SLO.md all agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trayllm import errors
from trayllm.slo.objectives import CLIENT_FAULT, SERVER_FAULT
from trayllm.telemetry.record import error_type_of
from trayllm.telemetry.schema import REQUEST_FIELDS

CLASSES = [errors.RequestError, *errors.request_error_classes()]
SLO_DOC = Path(__file__).resolve().parents[1] / "docs" / "SLO.md"


def test_the_walk_finds_every_class_defined_in_errors():
    defined = {obj for obj in vars(errors).values() if isinstance(obj, type) and issubclass(obj, errors.RequestError)}
    assert set(CLASSES) == defined


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_class_has_a_valid_record_type_and_a_budget_flag(cls):
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", cls.record_type), cls.record_type
    assert cls.record_type != errors.CANCELLED  # that one belongs to asyncio.CancelledError
    assert cls.record_type in REQUEST_FIELDS["error.type"].allowed
    assert isinstance(cls.burns_budget, bool)


def test_classes_sharing_a_record_type_agree_on_the_budget():
    """The SLO sees only the error.type string, so one type cannot both burn and not burn the budget."""
    decided: dict[str, tuple[bool, str]] = {}
    for cls in CLASSES:
        burns, first = decided.setdefault(cls.record_type, (cls.burns_budget, cls.__name__))
        assert burns == cls.burns_budget, f"{cls.__name__} and {first} share {cls.record_type!r} but not burns_budget"


def test_the_schema_allows_exactly_the_classes_record_types_and_cancelled():
    allowed = REQUEST_FIELDS["error.type"].allowed
    assert allowed is not None and len(allowed) == len(set(allowed))
    assert set(allowed) == {cls.record_type for cls in CLASSES} | {errors.CANCELLED}


def test_the_slo_splits_record_types_by_the_classes_budget_flag():
    assert {cls.record_type for cls in CLASSES if cls.burns_budget} == SERVER_FAULT
    assert {cls.record_type for cls in CLASSES if not cls.burns_budget} | {errors.CANCELLED} == CLIENT_FAULT


def test_records_read_the_record_type_from_the_class(monkeypatch):
    monkeypatch.setattr(errors.QueueFull, "record_type", "renamed")
    assert error_type_of(errors.QueueFull("x")) == "renamed"


def _backticked(text: str) -> set[str]:
    return set(re.findall(r"`([a-z_]+)`", text))


def test_docs_slo_lists_the_same_split():
    """docs/SLO.md's "What counts as an error" bullet: the types before "burn the budget" burn it, the rest not."""
    bullet = re.search(r"\*\*What counts as an error:\*\*(.*?)\n- ", SLO_DOC.read_text(), re.S)
    assert bullet, "docs/SLO.md lost its 'What counts as an error' bullet"
    burning, _, not_counted = bullet.group(1).partition("burn the budget")
    assert _backticked(burning) == SERVER_FAULT
    assert _backticked(not_counted) == CLIENT_FAULT


def test_the_module_docstring_table_matches_the_classes():
    """errors.py's tree of RequestError classes shows each one's status, code, record type and budget flag."""
    rows = re.findall(r"── (\w+) +(\d{3}) (\w+) +(\w+) +(yes|no)\b", errors.__doc__ or "")
    shown = {name: (int(status), code, kind, burns == "yes") for name, status, code, kind, burns in rows}
    assert shown == {
        cls.__name__: (cls.status_code, cls.code, cls.record_type, cls.burns_budget)
        for cls in CLASSES
        if cls is not errors.RequestError
    }
