"""How monitoring applies core's task events: a consumer batch at once, set-based.

The batch's task views and metrics records are read at once (locked), its events applied to them
in memory in delivery order (the ordering rules of read_model.py and metrics/measurements.py,
exactly as if one by one), and the results written at once. Per batch, whatever its size:
- task_views: one read, one insert of the new views, one update of the changed ones;
- metrics_records: one read (of the tasks known before the batch), one insert, one update, one
  delete (each only when the batch needs it);
- metrics_daily and metrics_histogram: the records' changes summed per row in memory, one upsert
  each (a backlog of a thousand no-op tasks of one type touches the same ~15 rows once per batch,
  not once per task);
- alert rules: the batch's brands' active rules read once and matched in memory (the matches,
  rare, are locked, recorded and announced together).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.events.catalog import (
    MetricsDeleted,
    TaskCancelled,
    TaskCreated,
    TaskDeleted,
    TaskEvent,
    TaskOutcome,
    TaskRetried,
    TaskStarted,
    TaskUpdated,
    parse,
)
from shared.events.envelope import Envelope, utcnow
from shared.unit_of_work import UnitOfWork

from . import read_model
from .alerts import service as alerts
from .metrics.measurements import Records
from .metrics.rollup import Rollup
from .read_model import TaskViews

# events that make a view of a task monitoring has not heard of (the others need one)
CREATING = (TaskCreated, TaskStarted, TaskOutcome, TaskDeleted)
# events that touch a task's metrics record
RECORDED = (TaskCreated, TaskUpdated, TaskOutcome, TaskDeleted)


def apply(uow: UnitOfWork, envelopes: Sequence[Envelope]) -> None:
    now = utcnow()
    events: list[tuple[Envelope, TaskEvent]] = []
    for env in envelopes:
        event = parse(env.event_type, env.data)
        if isinstance(event, TaskEvent):
            events.append((env, event))
    views = TaskViews(uow.session, (event.id for _, event in events))
    # a record exists only beside a view (views are never deleted: a deleted task's is a tombstone)
    records = Records(
        uow.session,
        (event.id for _, event in events if isinstance(event, RECORDED) and views.existed(event.id)),
    )
    measured: list[dict[str, Any]] = []
    for env, event in events:
        view = views.of(env, event.id, event.task_id, create=isinstance(event, CREATING))
        if view is None or view.status == read_model.DELETED:
            continue
        if isinstance(event, TaskCreated):
            read_model.on_created(view, event)
        elif isinstance(event, TaskUpdated):
            read_model.on_updated(view, event)
        elif isinstance(event, TaskStarted):
            read_model.on_started(view, event)
        elif isinstance(event, TaskOutcome):
            read_model.on_outcome(view, event, env)
            measurement = records.measure(view, event, env, now)
            if measurement is not None:
                measured.append(measurement)
        elif isinstance(event, TaskRetried):
            read_model.on_retried(view, event)
        elif isinstance(event, TaskCancelled):
            read_model.on_cancelled(view, event, env)
        elif isinstance(event, TaskDeleted):
            read_model.on_deleted(view)
            records.drop(view.id)
    records.follow(views)

    views.write(uow.session, now)
    rollup = Rollup()
    records.write(uow.session, rollup)
    rollup.write(uow.session)
    for record in records.dropped:
        uow.publish(
            MetricsDeleted(base_task=record["base_task"], task_id=record["task_id"]), record["brand_id"]
        )
    alerts.evaluate(uow, measured)
