"""Daily sums of the metrics records per (brand, UTC day, task type, priority), kept in the same
transaction as every change of a record. Dashboards, trends, per-type averages and
recommendations read these few rows instead of scanning up to a million records; only what needs
every value (min, max, percentiles, anomalies) reads the records themselves."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session

from shared.db import upsert

from ..models import MetricsDaily, MetricsRecord
from . import histogram
from .fields import NUMERIC

KEY = ("brand_id", "day", "task_type", "priority")


def _change(session: Session, record: MetricsRecord, sign: int) -> None:
    values: dict[str, Any] = {
        "brand_id": record.brand_id,
        "day": histogram.day_of(record),
        "task_type": record.task_type,
        "priority": record.priority,
        "runs": sign,
        "failures": sign * (0 if record.succeeded else 1),
        "peak_memory_mb": record.memory_usage_mb if sign > 0 else 0.0,
    }
    values.update({name: sign * (getattr(record, name) or 0) for name in NUMERIC})
    statement = upsert(session.get_bind(), MetricsDaily).values(**values)
    table, new = MetricsDaily.__table__.c, statement.excluded
    sums = {name: table[name] + new[name] for name in ("runs", "failures", *NUMERIC)}
    # the peak only ever grows: a day's highest observation stays its peak
    bigger = func.greatest if session.get_bind().dialect.name == "postgresql" else func.max
    sums["peak_memory_mb"] = bigger(table.peak_memory_mb, new.peak_memory_mb)
    session.execute(statement.on_conflict_do_update(index_elements=list(KEY), set_=sums))
    histogram.change(session, record, sign)


def add(session: Session, record: MetricsRecord) -> None:
    """Count the record's current figures in its day."""
    _change(session, record, +1)


def remove(session: Session, record: MetricsRecord) -> None:
    """Take the record's current figures out of its day (before a change or a delete)."""
    _change(session, record, -1)
