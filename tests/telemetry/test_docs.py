"""docs/RECORDS.md lists exactly the fields of the one schema."""

from __future__ import annotations

from pathlib import Path

from trayllm.telemetry.schema import ALERTS, REQUEST_FIELDS, markdown_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "RECORDS.md"


def test_records_doc_carries_the_generated_field_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert markdown_table() in text, (
        "regenerate the table: python -c 'from trayllm.telemetry.schema import markdown_table; print(markdown_table())'"
    )
    for path in REQUEST_FIELDS:
        assert f"| `{path}` |" in text


def test_records_doc_carries_the_alert_field_table() -> None:
    assert ALERTS.markdown_table() in DOC.read_text(encoding="utf-8"), "regenerate with ALERTS.markdown_table()"
