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


# The worked examples of the nearest-rank method in Wikipedia's "Percentile" article (the values
# numpy's percentile(method="inverted_cdf") gives for them too).
REFERENCE = [
    ([15, 20, 35, 40, 50], {5: 15, 30: 20, 40: 20, 50: 35, 100: 50}),
    ([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], {25: 7, 50: 8, 75: 15, 100: 20}),
    ([3, 6, 7, 8, 8, 9, 10, 13, 15, 16, 20], {25: 7, 50: 9, 75: 15, 100: 20}),
]


@pytest.mark.parametrize(("values", "expected"), REFERENCE)
def test_percentile_matches_the_reference_examples(values: list[float], expected: dict[int, float]) -> None:
    assert {pct: percentile(values, pct) for pct in expected} == expected


def test_percentile_does_not_slip_a_rank_on_float_error() -> None:
    # 0.07 * 200 is 14.000000000000002: the 7th percentile of 1..200 is the 14th value, not the 15th
    assert percentile([float(v) for v in range(1, 201)], 7) == 14.0


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


def test_a_figure_without_runs_has_no_median_in_json() -> None:
    figure = Figure("bulk throughput", "t/s", (), "not available")
    assert figure.as_dict()["median"] is None
