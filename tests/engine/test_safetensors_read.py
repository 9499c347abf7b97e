"""Reading safetensors with plain reads gives safetensors' own tensors, aligned, and refuses what does not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from trayllm.engine.safetensors_read import ALIGNMENT, read_into, read_safetensors


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Tensors of several dtypes and odd sizes, so that some land at offsets no wider type divides."""
    torch.manual_seed(0)
    tensors = {
        "a.int8": torch.randint(-127, 127, (3, 5), dtype=torch.int8),  # 15 bytes: the next one starts odd
        "b.bf16": torch.randn(7, 3).to(torch.bfloat16),
        "c.fp32": torch.randn(11),
        "d.bool": torch.tensor([True, False, True]),
        "e.empty": torch.zeros(0, 4),
    }
    path = tmp_path / "mixed.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def test_whole_reads_equal_safetensors_own_and_every_tensor_is_aligned(mixed: Path) -> None:
    expected = load_file(str(mixed))
    got = read_safetensors(mixed)
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
        assert got[name].numel() == 0 or got[name].data_ptr() % ALIGNMENT == 0, name


def test_reads_into_places_convert_dtypes_and_fill_slices(mixed: Path) -> None:
    expected = load_file(str(mixed))
    fused = torch.zeros(9, 3, dtype=torch.float32)  # b lands in rows 2..8 of a bigger matrix, widened to fp32
    targets = {
        "a.int8": torch.zeros(3, 5, dtype=torch.int8),
        "b.bf16": fused[2:],
        "c.fp32": torch.zeros(11, dtype=torch.bfloat16),  # narrowed
        "d.bool": torch.zeros(3, dtype=torch.bool),
        "e.empty": torch.zeros(0, 4),
    }
    assert read_into(mixed, targets) == set(expected)
    assert torch.equal(targets["a.int8"], expected["a.int8"])
    assert torch.equal(fused[2:], expected["b.bf16"].float()) and not fused[:2].any()
    assert torch.equal(targets["c.fp32"], expected["c.fp32"].to(torch.bfloat16))
    assert torch.equal(targets["d.bool"], expected["d.bool"])


def test_a_tensor_without_a_place_or_of_another_shape_is_refused(mixed: Path) -> None:
    places = {name: torch.zeros_like(t) for name, t in load_file(str(mixed)).items()}
    with pytest.raises(ValueError, match="a.int8 has no place"):
        read_into(mixed, {k: v for k, v in places.items() if k != "a.int8"})
    with pytest.raises(ValueError, match=r"c.fp32 is \[11\]"):
        read_into(mixed, {**places, "c.fp32": torch.zeros(12)})


@pytest.mark.parametrize("keep", [4, 20, -3])
def test_a_file_cut_short_is_refused(mixed: Path, keep: int) -> None:
    data = mixed.read_bytes()
    mixed.write_bytes(data[:keep])
    with pytest.raises(ValueError):
        read_safetensors(mixed)
    places = {"a.int8": torch.zeros(3, 5, dtype=torch.int8)}
    with pytest.raises(ValueError):
        read_into(mixed, places)
