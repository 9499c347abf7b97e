"""The CLI's text: what `status`, `slo`, `events`, `models`, `config show`, `ship` and `bench soak` print.

Built apart from the commands so that each command reads as parse, call, print.

Whatever the daemon or a record hands over may hold text from whoever paused, failed or named something: every
line built from it goes through ``one_line`` (no escapes, no line breaks).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trayllm import api_status, config_text
from trayllm.redact import mask_url_credentials
from trayllm.slo.report import to_text
from trayllm.terminal_text import one_line

if TYPE_CHECKING:
    from trayllm.bench.soak import SoakSample
    from trayllm.client import DaemonEvent
    from trayllm.elastic.shipper import ShipperStats
    from trayllm.model_catalog import Catalog


def duration(seconds: float) -> str:
    """``1h 02m``, ``3m 05s`` or ``4.2s``: as precise as a glance at an uptime needs."""
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m" if hours else f"{m}m {s:02d}s" if m else f"{seconds:.1f}s"


def slo_value(value: float | None, unit: str) -> str:
    """An objective's value or threshold in its unit (a ratio as a percentage); ``-`` while there is none."""
    if value is None:
        return "-"
    return f"{value * 100:.3g}%" if unit == "ratio" else f"{value:.3g} {unit}".rstrip()


def format_status(s: api_status.DaemonStatus) -> str:
    """`trayllm status`: one ``name value`` line per fact, the names aligned."""
    rows = [("state", s.state + (f" ({s.load_progress})" if s.load_progress else ""))]
    if s.paused:
        rows.append(("paused", f"{s.paused} (`trayllm resume` to serve again)"))
    if s.error:
        rows.append(("error", s.error))
    if s.model:
        m = s.model
        rows.append(("model", f"{m.name} · version {m.version} · context {m.context_length}"))
        if m.engine_url:
            rows.append(("engine", f"{m.engine} · upstream model {m.version} at {m.engine_url}"))
        else:
            rows.append(("engine", m.engine))
            rows.append(("runs on", f"{m.device} · {m.dtype} · quantization {m.quantization}"))
    if len(s.engines) > 1:  # [[engines]]: the rows above are the default one's
        rows += [("engines", engine.line()) for engine in s.engines]
    q, r = s.queue, s.requests
    backlog = f" · backlog cap {q.backlog_max_tokens} tokens" if q.backlog_cap_active else ""
    rows.append(("queue", f"{q.depth}/{q.capacity} waiting · {q.in_flight} in flight · batch {q.max_batch}{backlog}"))
    rows.append(
        (
            "requests",
            f"{r.completed} completed · {r.failed} failed · {r.cancelled} cancelled · "
            f"{r.rejected} rejected · tokens {r.tokens_in} in, {r.tokens_out} out",
        )
    )
    if s.vram:
        gib = 1024**3
        pct = s.vram.used_bytes / s.vram.total_bytes * 100 if s.vram.total_bytes else 0.0
        rows.append(("vram", f"{s.vram.used_bytes / gib:.2f} / {s.vram.total_bytes / gib:.2f} GiB ({pct:.0f}%)"))
    for row in s.slo:
        if row.state != "insufficient":
            rows.append(
                (
                    "slo",
                    f"{row.objective} {slo_value(row.value, row.unit)} "
                    f"(limit {slo_value(row.threshold, row.unit)}) {row.state}",
                )
            )
    rows.extend(("alert", f"{a.severity}: {a.message}") for a in s.alerts)
    if s.shipping is not None:
        sh = s.shipping
        rows.append(
            (
                "shipping",
                f"{sh.state} · {sh.delivered} delivered · {sh.duplicates} already there · "
                f"{sh.dead_lettered} dead-lettered"
                + (f" ({sh.unreadable} unreadable: torn or damaged lines)" if sh.unreadable else "")
                + f" · backlog {sh.backlog_bytes / 1e6:.1f} MB"
                + (f" · last error: {sh.last_error}" if sh.last_error else ""),
            )
        )
    rows.append(("uptime", duration(s.uptime_s)))
    rows.append(("daemon", f"pid {s.pid} · trayllm {s.version}"))
    return "\n".join(f"{name:<9} {mask_url_credentials(one_line(value))}" for name, value in rows)


def format_slo_report(report: api_status.SloReport) -> str:
    """`trayllm slo`: the objectives as a table, then the alerts that are firing, if any."""
    shown = [
        row.model_copy(
            update={name: one_line(value) for name, value in row.model_dump().items() if isinstance(value, str)}
        )
        for row in report.objectives
    ]  # the daemon's report: its names are text for one table cell each
    firing = sorted(key for key, state in report.alerts.items() if state == "firing")
    return to_text(shown) + ("\n" + one_line(f"firing: {', '.join(firing)}") if firing else "")


def format_event(event: DaemonEvent) -> str:
    """One `trayllm events` line: the local time, the event type, and its message (else its data)."""
    at = time.strftime("%H:%M:%S", time.localtime(event.data.get("at", time.time())))
    text = event.data.get("message") or ", ".join(
        f"{k}={v}" for k, v in event.data.items() if k not in ("at", "alerts") and v is not None
    )
    return one_line(f"{at} {event.type:<20} {text}")


def format_setting(row: dict[str, Any]) -> str:
    """One `trayllm config show` entry: its help, variable and default as a comment over ``name = value``."""
    changed = "" if row["value"] == row["default"] else f" (default {config_text.toml_value(row['default'])})"
    return f"# {row['help']} [{row['env']}]{changed}\n{row['name']} = {config_text.toml_value(row['value'])}\n"


def format_shipped(stats: ShipperStats, where: str, dead_letters: Path) -> str:
    """What one `trayllm ship` run did."""
    return (
        f"shipped to {where}: {stats.delivered} new, {stats.duplicates} already there, "
        f"{stats.dead_lettered} dead-lettered ({stats.unreadable} unreadable lines; see {dead_letters}), "
        f"{stats.retries} retries; backlog {stats.backlog_bytes} bytes"
    )


def format_soak_sample(s: SoakSample) -> str:
    """The stderr line `trayllm bench soak` writes after each interval."""
    return (
        f"bench: soak {s.elapsed_s / 60:.1f} min: {s.requests} requests, {s.errors} errors, "
        f"RSS {s.process.rss_mib:.1f} MiB, {s.process.open_fds} fds"
    )


def format_catalog(catalog: Catalog) -> str:
    """`trayllm models`: one row per model (``*`` the one serving, ``c`` the configured one), then the GPU the
    fits are for, and what the daemon serves."""
    rows = [["", "ID", "FORMAT", "PRECISION", "SIZE", "PARAMS", "FITS", "FROM"]]
    for m in catalog.models:
        mark = ("*" if m.serving else " ") + ("c" if m.configured else " ")
        rows.append(
            [
                mark,
                m.id,
                m.format or "-",
                m.precision or "-",
                "-" if m.size_bytes is None else f"{m.size_bytes / 2**30:.2f} GiB",
                "-" if m.parameters is None else f"{m.parameters / 1e9:.2f}B",
                m.fits or ("-" if catalog.gpu else "no GPU"),
                m.source + (f" (problem: {m.problem})" if m.problem else ""),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [one_line("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()) for row in rows]
    lines += ["", one_line(catalog.gpu_note), *(one_line(note) for note in catalog.notes)]
    serving = catalog.daemon
    lines.append(
        one_line(f"serving: {serving.name} (version {serving.version}); * marks it, c the configured model")
        if serving is not None
        else "serving: no daemon answers (c marks the configured model)"
    )
    return "\n".join(lines)
