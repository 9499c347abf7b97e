"""Nearest-rank percentile: rank = max(1, ceil(p/100 * n)), the value at that rank in sorted order."""

from __future__ import annotations

import pytest

from trayllm.bench import load
from trayllm.slo.percentile import percentile


def test_is_the_bench_definition_not_a_copy():
    assert percentile is load.percentile


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0, 15),  # rank max(1, ceil(0)) = 1
        (5, 15),  # ceil(0.25) = 1
        (30, 20),  # ceil(1.5) = 2
        (40, 20),  # ceil(2.0) = 2: exactly on a rank, not the next one
        (50, 35),  # ceil(2.5) = 3
        (100, 50),  # ceil(5) = 5: the maximum
    ],
)
def test_nearest_rank_of_five(p, expected):
    assert percentile([50, 35, 20, 40, 15], p) == expected  # sorted: 15 20 35 40 50


def test_p99_edges():
    assert percentile(list(range(1, 101)), 99) == 99  # n=100: rank ceil(99) = 99
    assert percentile(list(range(1, 100)), 99) == 99  # n=99: rank ceil(98.01) = 99, the maximum
    assert percentile(list(range(1, 1001)), 99.9) == 999  # n=1000: rank 999 (not 1000 from float error)
    assert percentile([7.0], 99) == 7.0


def test_empty_and_out_of_range():
    assert percentile([], 99) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)
