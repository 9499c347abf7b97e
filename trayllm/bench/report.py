"""Bench reports: a terminal table, a Markdown section for docs/BENCHMARKS.md, or JSON."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

from trayllm import api_status
from trayllm.bench.load import LevelResult

COLUMNS = (
    "concurrency",
    "requests",
    "errors",
    "first token p50 (ms)",
    "first token p99 (ms)",
    "decode tok/s per stream",
    "aggregate decode tok/s",
    "wall (s)",
)


def machine() -> dict[str, Any]:
    """Where the numbers came from."""
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
    }


def model_summary(status: api_status.DaemonStatus | None) -> dict[str, Any] | None:
    if status is None or status.model is None:
        return None
    m = status.model
    return {
        "name": m.name,
        "version": m.version,
        "device": m.device,
        "dtype": m.dtype,
        "quantization": m.quantization,
        "max_batch": status.queue.max_batch,
    }


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _row(level: LevelResult) -> list[str]:
    return [
        _cell(v)
        for v in (
            level.concurrency,
            level.requests,
            level.errors,
            level.first_token_p50_ms,
            level.first_token_p99_ms,
            level.decode_tokens_per_second_per_stream,
            level.aggregate_decode_tokens_per_second,
        )
    ] + [f"{level.wall_s:.2f}"]


def to_json(
    levels: Sequence[LevelResult],
    *,
    max_tokens: int,
    status: api_status.DaemonStatus | None,
    command: str,
    server: str | None = None,
) -> str:
    """``server`` names a measured URL and model other than the daemon's (``bench load --url``)."""
    return json.dumps(
        {
            "command": command,
            "max_tokens": max_tokens,
            "machine": machine(),
            "server": server,
            "model": model_summary(status),
            "levels": [lv.to_dict() for lv in levels],
        },
        indent=2,
    )


def to_text(levels: Sequence[LevelResult]) -> str:
    rows = [list(COLUMNS)] + [_row(lv) for lv in levels]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    for level in levels:
        for example in level.error_examples:
            lines.append(f"concurrency {level.concurrency} error: {example}")
    return "\n".join(lines)


def to_markdown(
    levels: Sequence[LevelResult],
    *,
    max_tokens: int,
    status: api_status.DaemonStatus | None,
    command: str,
    server: str | None = None,
) -> str:
    m = machine()
    model = model_summary(status)
    lines = [
        f"### trayllm bench, {time.strftime('%Y-%m-%d')}",
        "",
        f"- Machine: {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}",
    ]
    if server:
        lines.append(f"- Server: {server}")
    if model:
        lines.append(
            f"- Model: {model['name']} ({model['version']}) on {model['device']}, {model['dtype']}, "
            f"quantization {model['quantization']}, max batch {model['max_batch']}"
        )
    lines += [
        f"- Streamed requests, temperature 0, max_tokens {max_tokens}; first token measured by the client",
        f"- Command: `{command}`",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---:" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(_row(lv)) + " |" for lv in levels]
    return "\n".join(lines)


def command_line(argv: Sequence[str] | None = None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["trayllm", *args])
