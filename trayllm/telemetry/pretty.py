"""`trayllm logs`: request records as one readable line each, with the filters people ask for first."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

OUTCOME_LABEL = {"success": "ok", "failure": "FAIL", "unknown": "gone"}


@dataclass(frozen=True)
class RecordFilter:
    """Keep records matching every given criterion (None = any)."""

    outcome: str | None = None  # success / failure / unknown
    user: str | None = None
    request_id: str | None = None  # a prefix is enough, as printed by `trayllm ask`

    def matches(self, record: Mapping[str, Any]) -> bool:
        event = record.get("event", {})
        if self.outcome is not None and event.get("outcome") != self.outcome:
            return False
        if self.user is not None and record.get("user", {}).get("name") != self.user:
            return False
        return self.request_id is None or str(event.get("id", "")).startswith(self.request_id)

    def apply(self, records: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        return (r for r in records if self.matches(r))


def _ms(ns: Any) -> str:
    return "–" if not isinstance(ns, int | float) else f"{ns / 1e6:.0f} ms"


def format_record(record: Mapping[str, Any]) -> str:
    """``time  outcome  id  user  model  tokens  first-token  total  finish-or-error``."""
    event = record.get("event", {})
    gen_ai = record.get("gen_ai", {})
    usage = gen_ai.get("usage", {})
    llm = record.get("llm", {})
    outcome = OUTCOME_LABEL.get(event.get("outcome", ""), event.get("outcome", "?"))
    tokens = f"{usage.get('input_tokens', '–')}→{usage.get('output_tokens', '–')} tok"
    total = event.get("duration")
    ending = record.get("error", {}).get("type") or ",".join(gen_ai.get("response", {}).get("finish_reasons", []))
    vram = llm.get("vram", {}).get("peak", {}).get("pct")
    parts = [
        str(record.get("@timestamp", "?"))[:23],
        f"{outcome:<4}",
        str(event.get("id", "?"))[:12],
        str(record.get("user", {}).get("name", "?")),
        str(gen_ai.get("response", {}).get("model", gen_ai.get("request", {}).get("model", "?"))),
        tokens,
        f"ttft {_ms(llm.get('ttft', {}).get('ns'))}",
        f"total {_ms(total)}",
    ]
    if vram is not None:
        parts.append(f"vram {vram:.0%}")
    parts.append(ending or "–")
    return "  ".join(parts)
