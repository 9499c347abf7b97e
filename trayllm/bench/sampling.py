"""What picking the next tokens costs per decoding step: ``pick_tokens`` timed alone, at a few batch sizes.

Two mixes, both with the daemon's default repetition penalty (1.1) over a few hundred tokens already seen:
every row sampling (temperature 0.7, top-p 0.9, each row with its own seed), and every row greedy. The
logits are peaked as a language model's are (a few likely tokens over a noisy floor), so top-p finds its
nucleus among the top candidates, as it nearly always does in serving. They come in the dtype a model's
head emits there: float32 on the CPU, bfloat16 on CUDA.

    python -m trayllm.bench.sampling [--device cpu|cuda] [--batch 1 8 16] [--vocab 49152] [--steps N]
                                     [--implementation PATH]

``--implementation`` times another copy of trayllm/engine/sampling.py (any file with the same
``pick_tokens`` and ``row_generator``), e.g. ``git show HEAD:trayllm/engine/sampling.py > /tmp/old.py``,
for a before and after on the same machine. torch is imported only inside the functions: this is a
developer's tool, and trayllm.bench also holds client modules, which must never import it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

PROG = "python -m trayllm.bench.sampling"
WARMUP_STEPS = 10
LIKELY_TOKENS = 8  # per row, well above the floor: where a model's next-token mass sits
SEEN_TOKENS = 300  # per row, for the repetition penalty


@dataclass(frozen=True)
class StepCost:
    batch: int
    mode: str  # "sampled" or "greedy"
    median_us: float
    p90_us: float


def load_sampling(path: str | None) -> ModuleType:
    """trayllm.engine.sampling, or the copy of it at ``path``."""
    if path is None:
        return importlib.import_module("trayllm.engine.sampling")
    spec = importlib.util.spec_from_file_location("trayllm_bench_sampling_under_test", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load a module from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(sampling: ModuleType, batch: int, mode: str, vocab: int, steps: int, device: str) -> StepCost:
    """Time ``steps`` calls of ``pick_tokens`` on the same logits (after a warm-up), each as one decoding step."""
    import torch

    from trayllm.engine.types import SamplingParams

    where = torch.device(device)
    synthetic = torch.Generator().manual_seed(0)  # the same logits on every run
    logits = torch.randn(batch, vocab, generator=synthetic)
    likely = torch.randint(vocab, (batch, LIKELY_TOKENS), generator=synthetic)
    logits.scatter_(1, likely, 8.0 + 4.0 * torch.rand(batch, LIKELY_TOKENS, generator=synthetic))
    seen = torch.zeros(batch, vocab, dtype=torch.bool)
    seen.scatter_(1, torch.randint(vocab, (batch, SEEN_TOKENS), generator=synthetic), True)
    logits = logits.to(where, torch.bfloat16 if where.type == "cuda" else torch.float32)
    seen = seen.to(where)
    if mode == "sampled":
        params = [
            SamplingParams(max_tokens=256, temperature=0.7, top_p=0.9, repetition_penalty=1.1, seed=row)
            for row in range(batch)
        ]
    else:
        params = [SamplingParams(max_tokens=256, temperature=0.0, top_p=1.0, repetition_penalty=1.1)] * batch
    generators = [sampling.row_generator(p, where) for p in params]

    def wait() -> None:  # the clock may only be read once the device has finished the step
        if where.type == "cuda":
            torch.cuda.synchronize(where)

    samples = []
    for step in range(WARMUP_STEPS + steps):
        wait()
        start = time.perf_counter()
        sampling.pick_tokens(logits, seen, params, generators)
        wait()
        if step >= WARMUP_STEPS:
            samples.append((time.perf_counter() - start) * 1e6)
    return StepCost(batch, mode, statistics.median(samples), statistics.quantiles(samples, n=10)[-1])


def to_markdown(costs: list[StepCost], heading: str) -> str:
    lines = [heading, "", "| batch | mode | µs per step, median | µs per step, p90 |", "|---:|---|---:|---:|"]
    lines += [f"| {c.batch} | {c.mode} | {c.median_us:.0f} | {c.p90_us:.0f} |" for c in costs]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per batch size and mode (at least 2)")
    parser.add_argument("--implementation", metavar="PATH", help="time this copy of trayllm/engine/sampling.py")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2, for a p90")
    import torch

    sampling = load_sampling(args.implementation)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    source = Path(args.implementation).resolve() if args.implementation else "trayllm.engine.sampling"
    heading = (
        f"pick_tokens from {source} on {where}, torch {torch.__version__}, vocabulary {args.vocab}, "
        f"{args.steps} steps after {WARMUP_STEPS} warm-up; command: `{shlex.join([*PROG.split(), *argv])}`"
    )
    with torch.inference_mode():
        costs = [
            measure(sampling, batch, mode, args.vocab, args.steps, args.device)
            for batch in args.batch
            for mode in ("sampled", "greedy")
        ]
    print(to_markdown(costs, heading))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
