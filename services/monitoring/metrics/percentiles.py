"""Exact order statistics of a type's execution time in a window (minimum, maximum, a percentile),
found without sorting the window: the per-day histograms (metrics/histogram.py) tell which bucket
holds the wanted rank and how many of the window's values lie below it; an index scan on
(brand_id, task_type, execution_time_ms, created_at) from that bucket's lower edge then reads only
the few values it needs. The same queries on PostgreSQL and SQLite, and the same numbers as
PostgreSQL's percentile_cont over the whole window."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
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
    midnight, so that the window is whole histogram days)."""
    found = histogram.distributions(
        session, brand_id, "execution_time_ms", since.date().isoformat(), task_types
    )
    out = {}
    for task_type, values in found.items():
        where = [M.brand_id == brand_id, M.task_type == task_type, M.created_at >= since]
        position = fraction * (values.count - 1)
        lower = math.floor(position)
        pair = _ranked(session, where, values, lower, 2)
        upper = pair[1] if len(pair) > 1 else pair[0]
        out[task_type] = Spread(
            minimum=_ranked(session, where, values, 0, 1)[0],
            maximum=_highest(session, where, values),
            percentile=pair[0] + (upper - pair[0]) * (position - lower),
        )
    return out


def _ranked(
    session: Session, where: list, values: histogram.Distribution, rank: int, how_many: int
) -> list[float]:
    """The values of 0-based ranks rank .. rank + how_many - 1 (fewer at the top)."""
    bucket, below = values.locate(rank)
    found = session.scalars(
        select(M.execution_time_ms)
        .where(*where, M.execution_time_ms >= histogram.lower_edge(bucket.index))
        .order_by(M.execution_time_ms)
        .offset(rank - below)
        .limit(how_many)
    ).all()
    # a record changed between the two reads: the bucket's mean is the best answer left
    return [float(v) for v in found] or [bucket.mean]


def _highest(session: Session, where: list, values: histogram.Distribution) -> float:
    top = values.buckets[-1]
    inside = [M.execution_time_ms >= histogram.lower_edge(top.index)]
    upper = histogram.upper_edge(top.index)
    if upper is not None:  # skip the higher values of days outside the window
        inside.append(M.execution_time_ms < upper)
    found = session.scalars(
        select(M.execution_time_ms).where(*where, *inside).order_by(M.execution_time_ms.desc()).limit(1)
    ).first()
    return float(found) if found is not None else top.mean
