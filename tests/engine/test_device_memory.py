"""Which GPUs hold the KV cache, the CPU's empty readings, and the allocator setting."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

from trayllm.engine.device_memory import (
    ALLOCATOR_DEFAULT,
    ALLOCATOR_ENV,
    ALLOCATOR_ENV_OLD,
    NoGpu,
    Peak,
    configure_cuda_allocator,
    device_memory,
    kv_shares,
)


def _model_with_layers_on(*indices: int) -> SimpleNamespace:
    """Stands in for a model split by device_map: decoder layers whose weights sit on the given GPUs."""
    def layer(index: int) -> SimpleNamespace:
        return SimpleNamespace(parameters=lambda: iter([SimpleNamespace(device=torch.device("cuda", index))]))
    decoder = SimpleNamespace(layers=[layer(i) for i in indices])
    return SimpleNamespace(get_decoder=lambda: decoder, parameters=lambda: iter([]))


def test_the_kv_cache_is_shared_by_layer_count_between_the_gpus_holding_the_layers() -> None:
    model = _model_with_layers_on(0, 0, 0, 1, 1, 1, 1, 1)
    assert kv_shares(model, torch.device("cuda", 0)) == {0: 0.375, 1: 0.625}  # type: ignore[arg-type]


def test_a_model_on_one_gpu_keeps_all_its_cache_there() -> None:
    model = _model_with_layers_on(3, 3)
    assert kv_shares(model, torch.device("cuda", 3)) == {3: 1.0}  # type: ignore[arg-type]


def test_the_cpu_has_no_readings_no_peaks_and_is_healthy(tiny: object) -> None:
    memory = device_memory(tiny.model, torch.device("cpu"))  # type: ignore[attr-defined]
    assert isinstance(memory, NoGpu)
    memory.begin_pass()
    assert memory.readings() == [] and memory.pass_peak() is None and memory.release() is None and memory.healthy()


def test_the_higher_peak_is_the_one_nearer_its_gpus_size() -> None:
    big_card, small_card = Peak(30, 100, 0), Peak(9, 10, 1)  # 30 % of one, 90 % of the other
    assert big_card.higher(small_card) is small_card and small_card.higher(big_card) is small_card
    assert big_card.higher(None) is big_card


@pytest.mark.parametrize("user_set", [None, ALLOCATOR_ENV, ALLOCATOR_ENV_OLD])
def test_expandable_segments_unless_the_user_configured_the_allocator(
        monkeypatch: pytest.MonkeyPatch, user_set: str | None) -> None:
    for name in (ALLOCATOR_ENV, ALLOCATOR_ENV_OLD):
        monkeypatch.delenv(name, raising=False)
    if user_set:
        monkeypatch.setenv(user_set, "backend:cudaMallocAsync")
    configure_cuda_allocator()
    assert os.environ.get(ALLOCATOR_ENV) == (ALLOCATOR_DEFAULT if user_set is None else
                                             "backend:cudaMallocAsync" if user_set == ALLOCATOR_ENV else None)
