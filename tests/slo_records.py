"""Request records shaped like the daemon's (nested ECS, schema-valid), for the SLO tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = T0.timestamp() + 600  # the report is taken 10 minutes after T0


def record(offset_s, *, duration_s=1.0, ttft_s=None, vram_pct=None, error_type=None, status=200):
    outcome = "success" if error_type is None else "unknown" if error_type == "cancelled" else "failure"
    doc = {
        "@timestamp": (T0 + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z"),
        "log": {"level": "info" if outcome != "failure" else "error"},
        "message": f"chat {outcome}",
        "event": {
            "id": f"req-{offset_s}",
            "kind": "event",
            "category": ["web"],
            "outcome": outcome,
            "duration": int(duration_s * 1e9),
            "end": (T0 + timedelta(seconds=offset_s + duration_s)).isoformat().replace("+00:00", "Z"),
            "dataset": "trayllm.requests",
        },
        "service": {"name": "trayllm", "version": "0.1.0"},
        "host": {"name": "box"},
        "gen_ai": {"operation": {"name": "chat"}},
        "http": {"response": {"status_code": status}},
        "data_stream": {"type": "logs", "dataset": "trayllm.requests", "namespace": "default"},
        "llm": {"model": {"device": "cuda:0"}},
    }
    if ttft_s is not None:
        doc["llm"]["ttft"] = {"ns": int(ttft_s * 1e9)}
    if vram_pct is not None:
        doc["llm"]["vram"] = {"peak": {"pct": vram_pct, "bytes": int(vram_pct * 8e9)}, "total": {"bytes": 8 * 10**9}}
    if error_type is not None:
        doc["error"] = {"type": error_type, "message": error_type}
    return doc
