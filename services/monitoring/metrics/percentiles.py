"""Exact order statistics of a type's execution time in a window (minimum, maximum, a percentile),
found without sorting the window: the per-day histograms (metrics/histogram.py) tell which bucket
holds the wanted rank and how many of the window's values lie below it; an index scan on
(brand_id, task_type, execution_time_ms, created_at) from that bucket's lower edge then reads only
the few values it needs. The same queries on PostgreSQL and SQLite, and the same numbers as
PostgreSQL's percentile_cont over the whole window."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, literal, select, union_all
from sqlalchemy.orm import Session

from ..models import MetricsRecord as M
from . import histogram


@dataclass(frozen=True)
class Spread:
    minimum: float
    maximum: float
    percentile: float


def execution_time_spread(
    session: Session, brand_id: int, since: datetime, task_types: Iterable[str], fraction: float
) -> dict[str, Spread]:
    """{task_type: its min, max and `fraction` percentile (linearly interpolated between the two
    nearest ranks, percentile_cont's definition)} over the records created from `since` (a UTC
    midnight, so that the window is whole histogram days). One histogram query, then one query
    for every type's few values (a UNION of short index scans)."""
    found = histogram.distributions(
        session, brand_id, "execution_time_ms", since.date().isoformat(), task_types
    )
    if not found:
        return {}
    scans, positions = [], {}
    for task_type, values in found.items():
        where = [M.brand_id == brand_id, M.task_type == task_type, M.created_at >= since]
        positions[task_type] = fraction * (values.count - 1)
        scans += [
            _ranked(where, values, task_type, "minimum", 0, 1),
            _ranked(where, values, task_type, "percentile", math.floor(positions[task_type]), 2),
            _highest(where, values, task_type),
        ]
    read: dict[tuple[str, str], list[float]] = defaultdict(list)
    for task_type, kind, value in session.execute(union_all(*scans)).all():
        read[task_type, kind].append(float(value))
    out = {}
    for task_type, values in found.items():
        # a record changed between the two reads: a bucket's mean is the best answer left
        guess = values.locate(math.floor(positions[task_type]))[0].mean
        pair = sorted(read[task_type, "percentile"]) or [guess]
        upper, share = (pair[1] if len(pair) > 1 else pair[0]), positions[task_type] % 1
        out[task_type] = Spread(
            minimum=min(read[task_type, "minimum"] or [values.buckets[0].mean]),
            maximum=max(read[task_type, "maximum"] or [values.buckets[-1].mean]),
            percentile=pair[0] + (upper - pair[0]) * share,
        )
    return out


def _scan(task_type: str, kind: str, values: Select) -> Select:
    inner = values.subquery()
    return select(literal(task_type), literal(kind), inner.c.execution_time_ms)


def _ranked(
    where: list, values: histogram.Distribution, task_type: str, kind: str, rank: int, how_many: int
) -> Select:
    """The values of 0-based ranks rank .. rank + how_many - 1 (fewer at the top): an index scan
    from the lower edge of the bucket holding `rank`, skipping the window's values in it below."""
    bucket, below = values.locate(rank)
    lowest = histogram.lower_edge(bucket.index) <= M.execution_time_ms
    chosen = select(M.execution_time_ms).where(*where, lowest).order_by(M.execution_time_ms)
    return _scan(task_type, kind, chosen.offset(rank - below).limit(how_many))


def _highest(where: list, values: histogram.Distribution, task_type: str) -> Select:
    top = values.buckets[-1]
    inside = [histogram.lower_edge(top.index) <= M.execution_time_ms]
    upper = histogram.upper_edge(top.index)
    if upper is not None:  # skip the higher values of days outside the window
        inside.append(upper > M.execution_time_ms)
    chosen = select(M.execution_time_ms).where(*where, *inside).order_by(M.execution_time_ms.desc()).limit(1)
    return _scan(task_type, "maximum", chosen)
