"""The bench's statistics: a percentile is the nearest rank, never one above it."""

import math

import pytest

from bench.stats import Figure, percentile


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([1.0, 2.0], 50, 1.0),  # banker's rounding of 1.5 used to give the second value
        ([float(v) for v in range(1, 101)], 99, 99.0),
        ([float(v) for v in range(1, 101)], 7, 7.0),
        ([float(v) for v in range(1, 101)], 99.5, 100.0),
        ([float(v) for v in range(1, 11)], 90, 9.0),
        ([float(v) for v in range(1, 11)], 91, 10.0),
        ([3.0, 1.0, 2.0], 100, 3.0),
        ([3.0, 1.0, 2.0], 0, 1.0),
        ([5.0], 50, 5.0),
    ],
)
def test_percentile_is_the_nearest_rank(values: list[float], pct: float, expected: float) -> None:
    assert percentile(values, pct) == expected


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


def test_a_figure_without_runs_has_no_median_in_json() -> None:
    figure = Figure("bulk throughput", "t/s", (), "not available")
    assert figure.as_dict()["median"] is None
