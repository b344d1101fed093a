"""Daily sums of the metrics records per (brand, UTC day, task type, priority), kept in the same
transaction as every change of a record. Dashboards, trends, per-type averages and
recommendations read these few rows instead of scanning up to a million records; only what needs
every value (min, max, percentiles, anomalies) reads the records themselves.

A change is gathered in memory first (Rollup): a consumer batch of hundreds of records of one
type and day adds to its day's row and to each histogram bucket once, with one upsert per table,
instead of re-writing the same rows for every record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session

from shared.db import upsert

from ..models import MetricsDaily, MetricsRecord
from . import histogram
from .fields import NUMERIC

KEY = ("brand_id", "day", "task_type", "priority")
SUMMED = ("runs", "failures", *NUMERIC)


def values_of(record: MetricsRecord) -> dict[str, Any]:
    """A record's columns as a mapping (what Rollup and the alert rules read)."""
    return {column.key: getattr(record, column.key) for column in MetricsRecord.__table__.columns}


class Rollup:
    """Changes to the daily sums and the histograms, gathered per row and written at once."""

    def __init__(self) -> None:
        self.days: dict[tuple[int, str, str, str], dict[str, float]] = {}
        self.histograms = histogram.Deltas()

    def count(self, record: Mapping[str, Any], sign: int) -> None:
        """Count a record's figures in (sign +1) or out of (-1) its day."""
        key = (
            record["brand_id"],
            histogram.day_of(record["created_at"]),
            record["task_type"],
            record["priority"],
        )
        row = self.days.setdefault(key, dict.fromkeys((*SUMMED, "peak_memory_mb"), 0.0))
        row["runs"] += sign
        row["failures"] += sign * (0 if record["succeeded"] else 1)
        for name in NUMERIC:
            row[name] += sign * (record[name] or 0)
        if sign > 0:  # the peak only ever grows: a day's highest observation stays its peak
            row["peak_memory_mb"] = max(row["peak_memory_mb"], float(record["memory_usage_mb"] or 0))
        self.histograms.count(record, sign)

    def write(self, session: Session) -> None:
        rows = [
            {
                **dict(zip(KEY, key, strict=True)),
                **sums,
                "runs": int(sums["runs"]),
                "failures": int(sums["failures"]),
            }
            for key, sums in sorted(self.days.items())
            if any(sums.values())  # counted out and in again: nothing to write
        ]
        self.days.clear()
        bigger = func.greatest if session.get_bind().dialect.name == "postgresql" else func.max
        if rows:
            # one statement, compiled once, sent as multi-row VALUES by SQLAlchemy (executemany)
            statement = upsert(session.get_bind(), MetricsDaily)
            table, new = MetricsDaily.__table__.c, statement.excluded
            sums = {name: table[name] + new[name] for name in SUMMED}
            sums["peak_memory_mb"] = bigger(table.peak_memory_mb, new.peak_memory_mb)
            session.execute(statement.on_conflict_do_update(index_elements=list(KEY), set_=sums), rows)
        self.histograms.write(session)


def change(session: Session, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> None:
    """Move one record's figures from `before` (its values before a change, None for a new
    record) to `after` (None when it is deleted)."""
    rollup = Rollup()
    if before is not None:
        rollup.count(before, -1)
    if after is not None:
        rollup.count(after, +1)
    rollup.write(session)
