"""Per-day histograms of every metric, per (brand, metric, UTC day, task type), kept in the same
transaction as every change of a record (like the daily rollup). They answer "how many values of
the window lie below x" from a few thousand rows instead of a million records, which is what
percentiles, medians and outlier counts need.

Buckets are logarithmic: bucket 0 holds [0, 1e-6), bucket i > 0 holds [BOUNDS[i], BOUNDS[i + 1])
with each bound 5% above the previous one, up to 2^63. The bounds are one fixed list of floats,
used both to place a value (bisect here, the same comparison in SQL), so a bucket's members are
exactly the records with `BOUNDS[i] <= value < BOUNDS[i + 1]`: that lets an exact percentile be
finished with a short index scan inside one bucket (metrics/percentiles.py). Each bucket also
keeps the sum of its values, so a bucket holding a single distinct value (counts, flags) gives
that value exactly."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from shared.db import upsert

from ..models import MetricsHistogram as H
from .fields import NUMERIC

SMALLEST = 1e-6
GROWTH = 1.05
# changing these changes every bucket: it needs a migration that rebuilds metrics_histogram
BOUNDS: tuple[float, ...] = (0.0, *(SMALLEST * GROWTH**k for k in range(1180)))


def bucket_of(value: float | int | None) -> int:
    return bisect_right(BOUNDS, float(value or 0)) - 1


def lower_edge(bucket: int) -> float:
    return BOUNDS[bucket]


def upper_edge(bucket: int) -> float | None:
    """None for the last bucket, which is open above."""
    return BOUNDS[bucket + 1] if bucket + 1 < len(BOUNDS) else None


def day_of(created_at: datetime) -> str:
    """The UTC day a record counts in (its `created_at`)."""
    return created_at.astimezone(UTC).date().isoformat()


class Deltas:
    """Changes to the histograms, summed per row in memory and written with one upsert: a batch
    of records of one type and day touches each of its buckets once, however many records fall
    in it."""

    def __init__(self) -> None:
        # (brand_id, metric, day, task_type, bucket) -> [count, total, squares]
        self.rows: dict[tuple[int, str, str, str, int], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])

    def count(self, record: Mapping[str, Any], sign: int) -> None:
        """Count the record's values in (sign +1) or out of (-1) its day's histograms."""
        day = day_of(record["created_at"])
        for metric in NUMERIC:
            value = float(record[metric] or 0)
            row = self.rows[(record["brand_id"], metric, day, record["task_type"], bucket_of(value))]
            row[0] += sign
            row[1] += sign * value
            row[2] += sign * value * value

    def write(self, session: Session) -> None:
        rows = [
            {
                "brand_id": brand_id,
                "metric": metric,
                "day": day,
                "task_type": task_type,
                "bucket": bucket,
                "count": int(count),
                "total": total,
                "squares": squares,
            }
            for (brand_id, metric, day, task_type, bucket), (count, total, squares) in sorted(
                self.rows.items()
            )
            if count or total or squares  # a value counted out and in again changes nothing
        ]
        self.rows.clear()
        if rows:
            statement = upsert(session.get_bind(), H)
            table, new = H.__table__.c, statement.excluded
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["brand_id", "metric", "day", "task_type", "bucket"],
                    set_={
                        "count": table["count"] + new["count"],
                        "total": table.total + new.total,
                        "squares": table.squares + new.squares,
                    },
                ),
                rows,
            )


@dataclass(frozen=True)
class Bucket:
    index: int
    count: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        """The average of the bucket's values (within the bucket despite float rounding)."""
        low, high = lower_edge(self.index), upper_edge(self.index)
        return min(max(self.total / self.count, low), high if high is not None else math.inf)

    @property
    def span(self) -> tuple[float, float]:
        """Where the bucket's values lie, as the uniform range with their mean and variance
        (clipped to the bucket): a single point when they are all equal."""
        low, high, mean = lower_edge(self.index), upper_edge(self.index), self.mean
        variance = self.squares / self.count - mean * mean
        if variance <= (mean * 1e-9) ** 2:
            return mean, mean
        half = math.sqrt(3 * variance)
        return max(mean - half, low), min(mean + half, high if high is not None else mean + half)


class Distribution:
    """A task type's values in a window: its non-empty buckets in ascending order, each read as
    its values spread evenly over its span. Estimates from it are within a bucket's width (5%) of
    the exact figure, and exact when each bucket holds a single distinct value."""

    def __init__(self, buckets: Sequence[Bucket]) -> None:
        self.buckets = list(buckets)
        self.spans = [(*b.span, b.count) for b in self.buckets]
        self.lows = [low for low, _, _ in self.spans]
        # before[k]: how many values lie in the buckets below bucket k
        self.before = list(accumulate((b.count for b in self.buckets), initial=0))
        self.count = self.before[-1]

    def locate(self, rank: int) -> tuple[Bucket, int]:
        """The bucket holding the value of 0-based `rank` (in ascending order), and how many
        values of the window lie in lower buckets."""
        k = min(bisect_right(self.before, rank), len(self.buckets)) - 1
        return self.buckets[k], self.before[k]

    def below(self, x: float, inclusive: bool = True) -> float:
        """How many values are <= x (< x when not inclusive). Spans are disjoint and sorted, so
        all spans before the one starting at or below x count whole."""
        k = (bisect_right if inclusive else bisect_left)(self.lows, x) - 1
        if k < 0:
            return 0.0
        low, high, n = self.spans[k]
        part = n if high == low else n * min(1.0, (x - low) / (high - low))
        return self.before[k] + part

    def quantile(self, fraction: float) -> float:
        """The value below which `fraction` of the values lie."""
        wanted, seen = fraction * self.count, 0.0
        for low, high, n in self.spans:
            if seen + n >= wanted:
                return low + (high - low) * max(0.0, wanted - seen) / n
            seen += n
        return self.spans[-1][1]

    def median_deviation(self, center: float) -> float:
        """The median of |x - center| (the MAD when `center` is the median). The share of values
        within center ± d grows linearly in d between the distances of the spans' ends, so a
        binary search over those distances and one linear step find it."""

        def within(d: float) -> float:
            return self.below(center + d) - self.below(center - d, inclusive=False)

        wanted = 0.5 * self.count
        ends = sorted({abs(edge - center) for low, high, _ in self.spans for edge in (low, high)} | {0.0})
        first, last = 0, len(ends) - 1
        while first < last:  # the first distance at which half the values are within reach
            middle = (first + last) // 2
            if within(ends[middle]) >= wanted:
                last = middle
            else:
                first = middle + 1
        if first == 0:
            return 0.0
        before, after = ends[first - 1], ends[first]
        start, halfway = within(before), within((before + after) / 2)
        slope = (halfway - start) / ((after - before) / 2)
        return min(after, before + (wanted - start) / slope) if slope > 0 else after

    def mean_deviation(self, center: float) -> float:
        """The mean of |x - center|."""
        total = 0.0
        for low, high, n in self.spans:
            if center <= low or center >= high:
                total += n * abs((low + high) / 2 - center)
            else:
                total += n * ((center - low) ** 2 + (high - center) ** 2) / (2 * (high - low))
        return total / self.count if self.count else 0.0

    def count_outside(self, low_bucket: int, high_bucket: int) -> int:
        """Values in buckets below `low_bucket` or above `high_bucket`."""
        return sum(b.count for b in self.buckets if b.index < low_bucket or b.index > high_bucket)


def window(brand_id: int, metric: str, first_day: str) -> list[ColumnElement[bool]]:
    return [H.brand_id == brand_id, H.metric == metric, H.day >= first_day]


def distributions(
    session: Session, brand_id: int, metric: str, first_day: str, task_types: Iterable[str] | None = None
) -> dict[str, Distribution]:
    """{task_type: its distribution of `metric`} over the days from `first_day` on."""
    where = window(brand_id, metric, first_day)
    if task_types is not None:
        where.append(H.task_type.in_(list(task_types)))
    rows = session.execute(
        select(H.task_type, H.bucket, func.sum(H.count), func.sum(H.total), func.sum(H.squares))
        .where(*where)
        .group_by(H.task_type, H.bucket)
        .having(func.sum(H.count) > 0)
        .order_by(H.task_type, H.bucket)
    ).all()
    grouped: dict[str, list[Bucket]] = defaultdict(list)
    for task_type, bucket, count, total, squares in rows:
        grouped[task_type].append(Bucket(int(bucket), int(count), float(total or 0), float(squares or 0)))
    return {task_type: Distribution(buckets) for task_type, buckets in grouped.items()}


def rebuild(connection: Connection) -> None:
    """Recount every histogram from the records (a bulk load or a changed bucket scheme)."""
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        bounds = "ARRAY[" + ",".join(repr(b) for b in BOUNDS) + "]::float8[]"
        day = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

        def bucket(metric: str) -> str:
            return f"width_bucket({metric}::float8, {bounds}) - 1"
    else:
        connection.connection.driver_connection.create_function("taskhub_bucket", 1, bucket_of)  # type: ignore[union-attr]
        day = "substr(created_at, 1, 10)"

        def bucket(metric: str) -> str:
            return f"taskhub_bucket({metric})"

    connection.execute(text("DELETE FROM metrics_histogram"))
    for metric in NUMERIC:
        connection.execute(
            text(
                "INSERT INTO metrics_histogram (brand_id, metric, day, task_type, bucket, count, total, squares) "
                f"SELECT brand_id, '{metric}', {day}, task_type, {bucket(metric)}, count(*), sum({metric}), "
                f"sum(CAST({metric} AS DOUBLE PRECISION) * {metric}) "
                f"FROM metrics_records GROUP BY brand_id, {day}, task_type, {bucket(metric)}"
            )
        )
