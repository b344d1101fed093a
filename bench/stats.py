"""Figures of a benchmark: percentiles of one run, and median/min/max over repeated runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (what a latency SLO means): the smallest value with at least `pct` %
    of the values at or below it; NaN when there are no values. This is Hyndman and Fan's
    definition 1, numpy's `percentile(method="inverted_cdf")`, except where numpy's float product
    slips a rank (numpy puts the 7th percentile of 200 values at rank 15, 0.07 * 200 being
    14.000000000000002)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    # rounded first so that 7 % of 100 is rank 7, not 8 (0.07 * 100 is 7.000000000000001)
    rank = math.ceil(round(pct * len(ordered) / 100, 9))
    return ordered[max(1, min(len(ordered), rank)) - 1]


@dataclass(frozen=True)
class Figure:
    """One figure measured `len(runs)` times: reported as the median with its min and max."""

    name: str
    unit: str
    runs: tuple[float, ...]
    target: str = ""
    meets: bool | None = None  # None: no target or not comparable

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": self.median if self.runs else None,
            "min": min(self.runs) if self.runs else None,
            "max": max(self.runs) if self.runs else None,
            "runs": list(self.runs),
            "target": self.target,
            "meets_target": self.meets,
        }
