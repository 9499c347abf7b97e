"""The one percentile definition: nearest rank, used by the SLOs and reported by `trayllm bench`.

An SLO and a benchmark that disagree on what "P99" means would make a bench run unable to predict an
SLO breach, so both use this function: the smallest value with at least ``p`` percent of the values at
or below it (rank ``ceil(p/100 * n)``, at least 1; ``None`` for no values). With fewer than 100 values
the nearest-rank P99 is the maximum. It lives here, with no imports beyond the standard library, so the
SLO code does not pull in the client stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def nearest_rank(n: int, p: float) -> int:
    """The 1-based rank of the nearest-rank ``p``-th percentile among ``n`` sorted values (n >= 1)."""
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, got {p}")
    return max(1, math.ceil(round(p * n / 100, 9)))  # round: 99.9% of 1000 is rank 999, not 1000


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least ``p`` percent of values at or below it."""
    rank = nearest_rank(max(1, len(values)), p)
    if not values:
        return None
    return sorted(values)[rank - 1]
