"""python -m trayllm.bench.sampling: it times every batch size and mode asked for, of either implementation,
and importing it costs a client nothing (torch only inside)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import trayllm.engine.sampling
from trayllm.bench.sampling import main


def test_importing_the_sampling_bench_does_not_import_torch() -> None:
    code = "import sys, trayllm.bench.sampling; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("implementation", [None, trayllm.engine.sampling.__file__], ids=["installed", "from a path"])
def test_the_table_has_a_row_per_batch_size_and_mode(
    implementation: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--batch", "1", "3", "--vocab", "512", "--steps", "3"]
    argv += ["--implementation", implementation] if implementation else []
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:3] for line in out.splitlines() if line.startswith("| ") and "batch" not in line]
    assert [(b.strip(), m.strip()) for b, m in rows] == [
        ("1", "sampled"),
        ("1", "greedy"),
        ("3", "sampled"),
        ("3", "greedy"),
    ]
    assert f"pick_tokens from {Path(implementation).resolve() if implementation else 'trayllm.engine.sampling'}" in out
    assert "`python -m trayllm.bench.sampling --batch 1 3 --vocab 512 --steps 3" in out
