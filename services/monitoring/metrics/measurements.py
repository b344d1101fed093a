"""Metrics records written from core's outcome events, a consumer batch at a time. task.completed
and task.failed carry the attempt's metrics as the worker measured them and the task's summary,
so no other event is needed to file them.

One record per task: the first reported attempt creates it, a later attempt replaces its figures,
a report of an older attempt than the record's changes nothing. Worker-reported figures are not
announced (no metrics.recorded): core takes has_metrics and the summary from the worker's report
in the same transaction as the outcome. A record dropped with its task is announced
(metrics.deleted)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from shared.events.catalog import TaskCompleted, TaskOutcome
from shared.events.envelope import Envelope, parse_iso

from ..models import MetricsRecord
from ..read_model import TaskViews, View
from ..set_based import insert_new, update_rows
from .fields import MEASURED, reported_value
from .rollup import Rollup
from .scoring import score_of

RECORDS = cast(Table, MetricsRecord.__table__)


def new_record(view: View, measured_at: datetime, now: datetime) -> dict[str, Any]:
    """A record of the view's task, dated `measured_at` (when its first reported attempt ended)."""
    return {
        "brand_id": view.brand_id,
        "base_task": view.id,
        "task_id": view.task_id,
        "task_type": view.task_type,
        "priority": view.priority,
        **dict.fromkeys(MEASURED, 0),
        "performance_score": 0.0,
        "succeeded": True,
        "attempt": 0,
        "worker_name": None,
        "created_at": measured_at,
        "updated_at": now,
    }


def _first_int(*candidates: Any) -> int:
    for value in candidates:
        clean = reported_value("retry_count", value)
        if clean is not None:
            return int(clean)
    return 0


def _queue_wait_ms(view: View, event: TaskOutcome) -> float:
    """When the worker did not measure it: from creation to start, known for a first attempt only."""
    started = parse_iso(event.started_at) or view.started_at
    created = parse_iso(event.created_at) or view.created_at
    if event.attempt > 1 or started is None or created is None:
        return 0.0
    return float(reported_value("queue_wait_time_ms", (started - created).total_seconds() * 1000) or 0.0)


class Records:
    """The metrics records of one batch's tasks: read at once (locked), changed in memory,
    written at once, their daily sums and histograms moved with them."""

    def __init__(self, session: Session, base_tasks: Iterable[int]) -> None:
        wanted = sorted(set(base_tasks))
        rows = (
            session.execute(
                select(RECORDS)
                .where(RECORDS.c.base_task.in_(wanted))
                .order_by(RECORDS.c.base_task)
                .with_for_update()
            ).all()
            if wanted
            else []
        )
        self.records: dict[int, dict[str, Any]] = {row.base_task: dict(row._mapping) for row in rows}
        self.read = {pk: dict(record) for pk, record in self.records.items()}
        self.dropped: list[dict[str, Any]] = []

    def measure(self, view: View, event: TaskOutcome, env: Envelope, now: datetime) -> dict[str, Any] | None:
        """File the outcome's figures; returns the record as measured (a new measurement, for the
        alert rules), or None for a report of an older attempt than the record's."""
        record = self.records.get(view.id)
        if record is not None and record["attempt"] > event.attempt:
            return None
        if record is None:
            # dated when the attempt ended, even if the report arrives late (never in the future)
            ended = parse_iso(event.completed_at) or parse_iso(env.occurred_at) or now
            record = self.records[view.id] = new_record(view, min(ended, now), now)
        # every measured field the worker sent (AttemptMetrics names the usual ones), made safe:
        # events are never refused, a value that is not a finite number counts as not reported
        raw = env.data.get("metrics")
        reported: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
        for name in MEASURED:
            value = reported_value(name, reported.get(name))
            record[name] = value if value is not None else 0
        record["retry_count"] = _first_int(reported.get("retry_count"), event.retry_count, view.retry_count)
        if reported_value("queue_wait_time_ms", reported.get("queue_wait_time_ms")) is None:
            record["queue_wait_time_ms"] = _queue_wait_ms(view, event)
        record["worker_name"] = (event.worker_name or view.worker_name or "")[:200] or None
        record["succeeded"] = isinstance(event, TaskCompleted)
        record["attempt"] = event.attempt
        record["task_type"], record["priority"] = view.task_type, view.priority
        record["updated_at"] = now
        record["performance_score"] = score_of(record)
        return dict(record)

    def drop(self, base_task: int) -> None:
        record = self.records.pop(base_task, None)
        if record is not None:
            self.dropped.append(record)

    def follow(self, views: TaskViews) -> None:
        """Records carry their task's type and priority (analytics group by them): a change of
        the view (a late task.created, a new priority) moves the record's sums with it."""
        for base_task, record in self.records.items():
            view = views.views.get(base_task)
            if view is not None and view.task_type:
                record["task_id"], record["task_type"], record["priority"] = (
                    view.task_id,
                    view.task_type,
                    view.priority,
                )

    def write(self, session: Session, rollup: Rollup) -> None:
        new: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        gone: list[int] = []
        for base_task, record in sorted(self.records.items()):
            before = self.read.get(base_task)
            if before is None:
                new.append(record)
            elif record != before:
                changed.append(record)
                rollup.count(before, -1)
            else:
                continue
            rollup.count(record, +1)
        for base_task, before in sorted(self.read.items()):
            if base_task not in self.records:
                gone.append(before["id"])
                rollup.count(before, -1)
        insert_new(session, RECORDS, new, "base_task")
        update_rows(session, RECORDS, changed)
        if gone:
            session.execute(delete(RECORDS).where(RECORDS.c.id.in_(gone)))
