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
    AfterRelease,
    CudaMemory,
    GpuReading,
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
    monkeypatch: pytest.MonkeyPatch, user_set: str | None
) -> None:
    for name in (ALLOCATOR_ENV, ALLOCATOR_ENV_OLD):
        monkeypatch.delenv(name, raising=False)
    if user_set:
        monkeypatch.setenv(user_set, "backend:cudaMallocAsync")
    configure_cuda_allocator()
    assert os.environ.get(ALLOCATOR_ENV) == (
        ALLOCATOR_DEFAULT if user_set is None else "backend:cudaMallocAsync" if user_set == ALLOCATOR_ENV else None
    )


class TwoCards:
    """torch.cuda's memory calls as they answer for two GPUs of different sizes (ordinal -> figures)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.total = {0: 80 * 2**30, 1: 24 * 2**30}
        self.free = {0: 60 * 2**30, 1: 4 * 2**30}
        self.allocated = {0: 10 * 2**30, 1: 18 * 2**30}
        self.reserved = {0: 12 * 2**30, 1: 19 * 2**30}
        self.peak = {0: 30 * 2**30, 1: 20 * 2**30}
        self.resets: list[int] = []
        self.emptied = 0
        index = self._index
        for name, fake in (
            ("get_device_properties", lambda d: SimpleNamespace(total_memory=self.total[index(d)])),
            ("mem_get_info", lambda d: (self.free[index(d)], self.total[index(d)])),
            ("memory_allocated", lambda d: self.allocated[index(d)]),
            ("memory_reserved", lambda d: self.reserved[index(d)]),
            ("max_memory_allocated", lambda d: self.peak[index(d)]),
            ("reset_peak_memory_stats", lambda d: self.resets.append(index(d))),
            ("empty_cache", self._empty),
        ):
            monkeypatch.setattr(torch.cuda, name, fake)

    @staticmethod
    def _index(device: torch.device) -> int:
        return torch.device(device).index

    def _empty(self) -> None:
        self.emptied += 1
        self.reserved = dict(self.allocated)


def test_every_gpu_of_a_split_model_is_read_reset_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    cards = TwoCards(monkeypatch)
    memory = CudaMemory({0: 0.25, 1: 0.75})
    gib = 2**30
    assert memory.readings() == [
        GpuReading(0, 20 * gib, 2 * gib, 80 * gib, 0.25),
        GpuReading(1, 20 * gib, 1 * gib, 24 * gib, 0.75),
    ]
    memory.begin_pass()
    assert cards.resets == [0, 1]  # every GPU's peak starts with the pass, not just cuda:0's
    assert memory.pass_peak() == Peak(20 * gib, 24 * gib, 1)  # 83 % of the small card beats 38 % of the big one
    after = memory.release()
    assert cards.emptied == 1
    assert after == AfterRelease(1, 18 * gib, 18 * gib, 24 * gib)  # the report names the GPU that is fullest
