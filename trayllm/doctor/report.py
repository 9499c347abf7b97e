"""`trayllm doctor` as text or JSON: the machine, then the fit table and a recommendation for its best GPU."""

from __future__ import annotations

from typing import Any

from trayllm.doctor.fit import BYTES_PER_PARAM, GIB, FitRow, fit_table, recommendation
from trayllm.doctor.gpus import Machine
from trayllm.extras import pip_install


def doctor_report(machine: Machine, context: int, limit: float, planned_gib: float | None = None) -> dict[str, Any]:
    """Everything the doctor says, as data (the JSON output; the text is made from it).

    With ``planned_gib`` the fit table is for a GPU of that size with all of it free instead of the best
    one here: the question someone choosing a GPU, or sizing a model for another machine, asks.
    """
    out: dict[str, Any] = {"machine": machine.to_dict(), "context": context, "vram_limit": limit}
    if planned_gib is not None:
        rows = fit_table(planned_gib * GIB, planned_gib * GIB, context, limit)
        out["fit_gpu"] = None
        out["fit_for"] = f"a {planned_gib:g} GiB GPU (planned, all of it free)"
        out["fit"] = _fit_rows(rows)
        out["recommendation"] = recommendation(rows)
        return out
    if not machine.gpus:
        out["fit"] = []
        out["recommendation"] = ("no NVIDIA GPU: trayllm runs on the CPU. The embedded SmolLM2-135M answers at "
                                 "about 20 tokens/s per stream on 2 cores; 1B models work but slowly; 3B and up "
                                 "are not practical without a GPU")
        return out
    best = max(machine.gpus, key=lambda g: g.free_bytes)
    rows = fit_table(best.free_bytes, best.total_bytes, context, limit)
    out["fit_gpu"] = best.index
    out["fit_for"] = f"GPU {best.index}"
    out["fit"] = _fit_rows(rows)
    out["recommendation"] = recommendation(rows)
    if machine.torch_problem:
        out["recommendation"] += f" (but first: {machine.torch_problem})"
    return out


def _fit_rows(rows: list[FitRow]) -> list[dict[str, Any]]:
    return [{"size": r.size, "example": r.example, "need_gib": r.need_gib, "verdict": r.verdicts} for r in rows]


def to_text(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = []
    if m["nvml_error"]:
        lines.append(f"GPU       none found: no NVIDIA driver / NVML ({m['nvml_error']})")
    for gpu in m["gpus"]:
        cc = ".".join(str(x) for x in gpu["compute_capability"])
        kind = "integrated" if gpu["integrated"] else "discrete"
        lines.append(f"GPU {gpu['index']}     {gpu['name']} · {kind} · {gpu['total_bytes'] / GIB:.1f} GiB total, "
                     f"{gpu['free_bytes'] / GIB:.1f} GiB free · compute {cc} · bf16 {'yes' if gpu['bf16'] else 'no'}")
    if m["driver"]:
        lines.append(f"driver    {m['driver']} (CUDA {m['cuda_driver']})")
    problem = f" — {m['torch_problem']}" if m["torch_problem"] else ""
    lines.append(f"torch     {m['torch'] or 'not installed'}{problem}")
    bnb = "installed" if m["bitsandbytes"] else f"not installed ({pip_install('gpu')})"
    lines.append(f"4/8-bit   bitsandbytes {bnb}")
    if report["fit"]:
        lines.append("")
        lines.append(f"What fits on {report['fit_for']} with a {report['context']}-token context "
                     f"(limit {report['vram_limit']:.0%} of the device; GiB needed):")
        header = ["size", "example"] + list(BYTES_PER_PARAM)
        table = [header] + [[r["size"], r["example"]] + [f"{r['need_gib'][p]:g} {r['verdict'][p]}"
                                                         for p in BYTES_PER_PARAM] for r in report["fit"]]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.append("")
    lines.append(f"recommendation: {report['recommendation']}")
    return "\n".join(lines)
