"""Which NVML GPU is which cuda:N, by the rules of NVIDIA's "CUDA Environment Variables": CUDA's own order (PCI
bus order, or fastest first), then CUDA_VISIBLE_DEVICES's entries in their order, up to the first that names
no GPU."""

from __future__ import annotations

import pytest

from trayllm.doctor.cuda_order import cuda_view
from trayllm.doctor.gpus import Gpu

GIB = 2**30


def gpu(index: int, name: str, bus: int, uuid: str) -> Gpu:
    return Gpu(index, name, uuid, f"00000000:{bus:02X}:00.0", 24 * GIB, 23 * GIB, (8, 9), False)


# NVML's order is not the bus order: GPU 0 sits on bus 0x81, GPU 1 on 0x02, GPU 2 on 0x41
SAME = [
    gpu(0, "NVIDIA L4", 0x81, "GPU-aaaa1111"),
    gpu(1, "NVIDIA L4", 0x02, "GPU-bbbb2222"),
    gpu(2, "NVIDIA L4", 0x41, "GPU-aaaa3333"),
]
MIXED = [gpu(0, "NVIDIA L4", 0x81, "GPU-aaaa1111"), gpu(1, "NVIDIA A100", 0x02, "GPU-bbbb2222")]


@pytest.mark.parametrize(
    ("gpus", "visible_devices", "order", "ordinals", "hidden"),
    [
        (SAME, None, None, {1: 0, 2: 1, 0: 2}, set()),  # one model: fastest first leaves the bus order
        (MIXED, None, "PCI_BUS_ID", {1: 0, 0: 1}, set()),
        (SAME, "2,0", None, {0: 0, 1: 1}, {2}),  # integers count in CUDA's order, numbered in the entries' order
        (SAME, "GPU-bbbb, GPU-aaaa3", None, {1: 0, 2: 1}, {0}),  # UUID prefixes, spaces around entries allowed
        (MIXED, "GPU-bbbb2222,GPU-aaaa1111", None, {1: 0, 0: 1}, set()),  # UUIDs are exact across models too
        (SAME, "1,7,0", None, {2: 0}, {0, 1}),  # 7 names no GPU: it and everything after it are hidden
        (SAME, "1,-1,0", None, {2: 0}, {0, 1}),
        (SAME, "0,GPU-aaaa,2", None, {1: 0}, {0, 2}),  # two UUIDs start GPU-aaaa: not a GPU, as for CUDA
        (SAME, "GPU-cccc", None, {}, {0, 1, 2}),
    ],
)
def test_visible_gpus_and_their_ordinals(gpus, visible_devices, order, ordinals, hidden):
    view = cuda_view(gpus, visible_devices, order)
    assert view.ordinals == ordinals
    assert {index for index, seen in view.visible.items() if seen is False} == hidden
    assert all(view.visible[index] for index in ordinals)


def test_an_entry_that_names_no_gpu_is_named_in_the_note():
    assert "entry '7' names no GPU here" in cuda_view(SAME, "1,7,0", None).note
    hides_all = cuda_view(SAME, "GPU-cccc", None).note
    assert "entry 'GPU-cccc' names no GPU" in hides_all and "hides every GPU" in hides_all


@pytest.mark.parametrize(
    ("visible_devices", "says"),
    [
        ("0", "name them by UUID"),  # fastest first across models: which GPU is 0 is CUDA's guess
        ("MIG-4f1a2b3c-1d2e-3f4a-5b6c-7d8e9f0a1b2c", "MIG instance"),
        ("GPU-aaaa,GPU-aaaa1", "twice"),
    ],
)
def test_what_the_doctor_cannot_tell_it_says(visible_devices, says):
    view = cuda_view(MIXED, visible_devices, None)
    assert view.visible == {0: None, 1: None} and view.ordinals == {}
    assert says in view.note


def test_no_gpus_no_note():
    assert cuda_view([], "", None).note is None
