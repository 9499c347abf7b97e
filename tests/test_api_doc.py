"""docs/API.md is what scripts/build_api_doc.py writes from the daemon's routes, request models and rule tables, and
the generator refuses to leave a route or a field undocumented."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel, Field

from trayllm.api import ChatCompletionRequest, CompletionRequest
from trayllm.api_fields import CHAT_FIELD_RULES, COMPLETION_FIELD_RULES
from trayllm.ollama_rules import REFUSED_ROUTES, RULES

ROOT = Path(__file__).resolve().parents[1]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_api_doc", ROOT / "scripts" / "build_api_doc.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    return generator


def test_api_doc_is_what_the_generator_writes() -> None:
    doc = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    assert doc == _generator().render(), "docs/API.md is stale: run .venv/bin/python scripts/build_api_doc.py"


def test_the_doc_has_every_route_field_rule_and_refusal() -> None:
    generator = _generator()
    doc = generator.render()
    for route in generator.app_routes():
        assert f"| `{generator.shown_path(route)}` |" in doc, route.path
    for model in (ChatCompletionRequest, CompletionRequest):
        for name in model.model_fields:
            assert f"| `{name}` |" in doc, name
    for rule in CHAT_FIELD_RULES + COMPLETION_FIELD_RULES:
        assert f"| `{rule.name}` | {rule.takes} | {rule.refused} |" in doc, rule.name
    for ollama in RULES:
        assert f"`{ollama.name}`" in doc and ollama.note in doc, ollama.name
    for refused in REFUSED_ROUTES:
        assert f"| `{refused.path}` | {refused.message} |" in doc, refused.path
    assert "| `seed` | integer or null | -2⁶³ to 2⁶³-1 | `null` |" in doc
    assert "| `top_p` | number or null | above 0, up to 1 | `null` |" in doc


def test_a_route_without_a_line_or_a_line_without_a_route_stops_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = _generator()
    notes = dict(generator.ROUTE_NOTES)
    del notes["/v1/slo"]
    monkeypatch.setattr(generator, "ROUTE_NOTES", notes)
    with pytest.raises(ValueError, match="/v1/slo"):
        generator.render()
    monkeypatch.setattr(generator, "ROUTE_NOTES", {**generator.ROUTE_NOTES, "/v1/slo": ("trayllm", ""), "/v1/x": ()})
    with pytest.raises(ValueError, match="/v1/x"):
        generator.render()


def test_a_field_without_a_description_stops_the_generator() -> None:
    class Body(BaseModel):
        said: int = Field(ge=1, description="documented")
        unsaid: int = 0

    with pytest.raises(ValueError, match="Body.unsaid has no description"):
        _generator().fields_table(Body)
