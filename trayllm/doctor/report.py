"""`trayllm doctor` as text or JSON: the machine, then the fit table and a recommendation for its best GPU."""

from __future__ import annotations

from typing import Any

from trayllm.doctor.fit import BYTES_PER_PARAM, GIB, FitRow, fit_table, recommendation
from trayllm.doctor.gpus import Gpu, Machine
from trayllm.extras import pip_install

CPU_ADVICE = (
    "trayllm runs on the CPU. The embedded SmolLM2-135M answers at about 20 tokens/s per stream on 2 "
    "cores; 1B models work but slowly; 3B and up are not practical without a GPU"
)


def doctor_report(machine: Machine, context: int, limit: float, planned_gib: float | None = None) -> dict[str, Any]:
    """Everything the doctor says, as data (the JSON output; the text is made from it).

    With ``planned_gib`` the fit table is for a GPU of that size with all of it free instead of the best
    one here: the question someone choosing a GPU, or sizing a model for another machine, asks. Otherwise it
    is for the GPU with the most free memory among those CUDA_VISIBLE_DEVICES leaves the daemon.
    """
    out: dict[str, Any] = {"machine": machine.to_dict(), "context": context, "vram_limit": limit}
    if planned_gib is not None:
        rows = fit_table(planned_gib * GIB, planned_gib * GIB, context, limit)
        out["fit_gpu"] = out["fit_device"] = None
        out["fit_for"] = f"a {planned_gib:g} GiB GPU (planned, all of it free)"
        out["fit"] = _fit_rows(rows)
        out["recommendation"] = recommendation(rows)
        return out
    best = best_visible(machine)
    if best is None:
        out["fit"] = []
        hidden = f"CUDA_VISIBLE_DEVICES={machine.cuda_visible_devices!r} hides every GPU" if machine.gpus else ""
        out["recommendation"] = f"{hidden or 'no NVIDIA GPU'}: {CPU_ADVICE}"
        return out
    rows = fit_table(best.free_bytes, best.total_bytes, context, limit)
    cuda = machine.cuda
    ordinal = cuda.ordinals.get(best.index)
    out["fit_gpu"] = best.index
    out["fit_device"] = None if ordinal is None else f"cuda:{ordinal}"
    if ordinal is not None:
        out["fit_for"] = f"GPU {best.index} (device = cuda:{ordinal})"
    elif cuda.visible[best.index]:
        out["fit_for"] = f"GPU {best.index} (its cuda:N depends on CUDA's order)"
    else:
        out["fit_for"] = f"GPU {best.index} (if the daemon sees it)"
    out["fit"] = _fit_rows(rows)
    out["recommendation"] = recommendation(rows)
    if machine.torch_problem:
        out["recommendation"] += f" (but first: {machine.torch_problem})"
    return out


def best_visible(machine: Machine) -> Gpu | None:
    """The GPU with the most free memory that the daemon sees, or, where that is unknown, may see."""
    visible = machine.cuda.visible
    candidates = [gpu for gpu in machine.gpus if visible[gpu.index]] or [
        gpu for gpu in machine.gpus if visible[gpu.index] is None
    ]
    return max(candidates, key=lambda gpu: gpu.free_bytes, default=None)


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
        lines.append(
            f"GPU {gpu['index']}     {gpu['name']} · {kind} · {gpu['total_bytes'] / GIB:.1f} GiB total, "
            f"{gpu['free_bytes'] / GIB:.1f} GiB free · compute {cc} · bf16 {'yes' if gpu['bf16'] else 'no'}"
        )
        lines.append(f"          {_cuda_device(gpu)} · PCI {gpu['pci_bus_id']} · {gpu['uuid']}")
    if m["gpus"]:
        lines += _cuda_lines(m)
    if m["driver"]:
        lines.append(f"driver    {m['driver']} (CUDA {m['cuda_driver']})")
    problem = f" — {m['torch_problem']}" if m["torch_problem"] else ""
    lines.append(f"torch     {m['torch'] or 'not installed'}{problem}")
    bnb = "installed" if m["bitsandbytes"] else f"not installed ({pip_install('gpu')})"
    lines.append(f"4/8-bit   bitsandbytes {bnb}")
    if report["fit"]:
        lines.append("")
        lines.append(
            f"What fits on {report['fit_for']} with a {report['context']}-token context "
            f"(limit {report['vram_limit']:.0%} of the device; GiB needed):"
        )
        header = ["size", "example"] + list(BYTES_PER_PARAM)
        table = [header] + [
            [r["size"], r["example"]] + [f"{r['need_gib'][p]:g} {r['verdict'][p]}" for p in BYTES_PER_PARAM]
            for r in report["fit"]
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.append("")
    lines.append(f"recommendation: {report['recommendation']}")
    return "\n".join(lines)


def _cuda_device(gpu: dict[str, Any]) -> str:
    """What ``device =`` names this GPU for a daemon started in this environment."""
    if gpu["cuda_device"]:
        return f"device = {gpu['cuda_device']}"
    if gpu["cuda_visible"] is False:
        return "hidden by CUDA_VISIBLE_DEVICES"
    return "device = cuda:? (CUDA's order)" if gpu["cuda_visible"] else "device = cuda:? (see CUDA below)"


def _cuda_lines(m: dict[str, Any]) -> list[str]:
    """The environment that decides ``cuda:N`` (GPU N above is NVML's number, nvidia-smi's), and why N is unknown."""
    visible, order = m["cuda_visible_devices"], m["cuda_device_order"]
    lines = [
        f"CUDA      CUDA_VISIBLE_DEVICES {'unset' if visible is None else repr(visible)} · CUDA_DEVICE_ORDER "
        f"{order or 'unset (fastest first)'}, as in this shell (a daemon started elsewhere has its own)"
    ]
    if m["cuda_note"]:
        lines.append(f"          {m['cuda_note']}")
    return lines
