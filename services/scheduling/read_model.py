"""What scheduling learns from core's task events: which task each run created (task.created's
`origin.idempotency_key`), and how each run ended, which feeds last_run_status, the overlap
policy, stats and performance-analysis.

Bindings: task.created and the outcomes (started, completed, failed, cancelled, retried) of
periodic tasks only: core gives every event of a task a schedule created the `periodic` header
and the broker drops the others (`FILTERED`), so a plain task costs scheduling no delivery.
task.updated and task.deleted are not bound: nothing here acts on them. (A `base_task` template
is asked of core when a periodic task is made: periodic_tasks/service.py `template_of`.)

Every handler takes a run of consecutive events of its types and applies it with set-based
statements (a few per batch, none per event), the rules applied in memory in delivery order,
exactly as one by one. Runs never move backwards: a final outcome sticks until core retries the
task, a late `started` changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, bindparam, case, select, update

from shared.db import is_postgres
from shared.events.bus import FilteredBindings
from shared.events.catalog import (
    PERIODIC_HEADER,
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskFailed,
    TaskRetried,
    TaskStarted,
    read,
)
from shared.events.envelope import Envelope, parse_iso
from shared.events.inbox_consumer import BatchEventHandler
from shared.unit_of_work import UnitOfWork

from .models import CRON_JOB, CronJob, PeriodicTask, ScheduleRun
from .planning import SCHEDULES

FINAL = ("success", "failed", "cancelled")
OUTCOMES = ("task.started", "task.completed", "task.failed", "task.cancelled", "task.retried")
FILTERED: FilteredBindings = {
    event_type: {PERIODIC_HEADER: "1"} for event_type in ("task.created", *OUTCOMES)
}
# bound directly by earlier versions (the broker keeps a durable queue's bindings across deploys)
RETIRED_BINDINGS = ("task.created", "task.updated", "task.deleted")

_OUTCOME_CLASSES: dict[str, type[TaskStarted | TaskCompleted | TaskFailed | TaskCancelled | TaskRetried]] = {
    "task.started": TaskStarted,
    "task.completed": TaskCompleted,
    "task.failed": TaskFailed,
    "task.cancelled": TaskCancelled,
    "task.retried": TaskRetried,
}


# ----------------------------------------------------------------------------------------- links


def apply_created(uow: UnitOfWork, envelopes: Sequence[Envelope]) -> None:
    """The runs whose slot key the new tasks carry learn their task."""
    links: dict[str, tuple[int, str, int]] = {}  # slot key -> (task, task_id, brand)
    for envelope in envelopes:
        if envelope.brand_id is None:
            continue
        task = read(envelope.data, TaskCreated)
        key = (task.origin or {}).get("idempotency_key")
        if key:
            links.setdefault(str(key), (task.id, task.task_id, envelope.brand_id))
    if links:
        _link_runs(uow, links)


def _link_runs(uow: UnitOfWork, links: dict[str, tuple[int, str, int]]) -> None:
    runs = ScheduleRun.__table__
    waiting = uow.session.execute(
        select(runs.c.id, runs.c.idempotency_key, runs.c.brand_id, runs.c.cancel_requested_at).where(
            runs.c.idempotency_key.in_(sorted(links)), runs.c.task_pk.is_(None)
        )
    ).all()
    linked = [run for run in waiting if links[run.idempotency_key][2] == run.brand_id]
    if not linked:
        return
    uow.session.execute(
        update(runs)
        .where(runs.c.id == bindparam("run_id"), runs.c.task_pk.is_(None))
        .values(task_pk=bindparam("pk"), task_ref=bindparam("ref")),
        [
            {"run_id": run.id, "pk": links[run.idempotency_key][0], "ref": links[run.idempotency_key][1]}
            for run in linked
        ],
    )
    if any(run.cancel_requested_at is not None for run in linked):
        uow.wake(SCHEDULES)  # a cancel_previous decision was waiting for this task: the scheduler asks core


# -------------------------------------------------------------------------------- run outcomes


@dataclass
class _Run:
    """A run as the outcomes of a batch move it (written once at the end)."""

    id: int
    schedule_kind: str
    schedule_id: int
    fired_at: datetime
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    changed: bool = False
    clear_cancel: bool = False


@dataclass
class _ScheduleNews:
    """What the batch's outcomes tell a schedule, in delivery order."""

    last_status: list[tuple[datetime, str]] = field(default_factory=list)  # (run fired_at, status)
    counts: list[tuple[str, int]] = field(default_factory=list)  # cron jobs: (counter, +1 / -1)


def apply_outcomes(uow: UnitOfWork, envelopes: Sequence[Envelope]) -> None:
    """started / completed / failed / cancelled / retried of periodic tasks: the runs they
    created are read once (locked), moved in memory event by event, and written back in one
    statement; their schedules likewise."""
    events = [
        (envelope, read(envelope.data, _OUTCOME_CLASSES[envelope.event_type]))
        for envelope in envelopes
        if envelope.brand_id is not None
    ]
    if not events:
        return
    runs_of = _runs_of(uow, {event.id for _, event in events})
    news: dict[tuple[str, int], _ScheduleNews] = defaultdict(_ScheduleNews)
    for envelope, event in events:
        for run in runs_of.get((event.id, envelope.brand_id or 0), []):
            _apply(run, envelope, event, news[(run.schedule_kind, run.schedule_id)])
    _write_runs(uow, [run for runs in runs_of.values() for run in runs if run.changed])
    _write_schedules(uow, news)


def _runs_of(uow: UnitOfWork, task_pks: set[int]) -> dict[tuple[int, int], list[_Run]]:
    table = ScheduleRun.__table__
    query = (
        select(
            table.c.id,
            table.c.task_pk,
            table.c.brand_id,
            table.c.schedule_kind,
            table.c.schedule_id,
            table.c.fired_at,
            table.c.status,
            table.c.started_at,
            table.c.finished_at,
        )
        .where(table.c.task_pk.in_(sorted(task_pks)))
        .order_by(table.c.id)
    )
    if is_postgres(uow.session.get_bind()):
        query = query.with_for_update()
    runs: dict[tuple[int, int], list[_Run]] = defaultdict(list)
    for row in uow.session.execute(query):
        runs[(row.task_pk, row.brand_id)].append(
            _Run(
                row.id,
                row.schedule_kind,
                row.schedule_id,
                row.fired_at,
                row.status,
                row.started_at,
                row.finished_at,
            )
        )
    return runs


def _moment(envelope: Envelope, value: str | None) -> datetime | None:
    return parse_iso(value) or parse_iso(envelope.occurred_at)


def _apply(run: _Run, envelope: Envelope, event: Any, news: _ScheduleNews) -> None:
    """One event on one run, as one by one: never backwards."""
    if isinstance(event, TaskStarted):
        if run.status == "pending":
            run.status, run.changed = "running", True
        if run.started_at is None:
            run.started_at, run.changed = _moment(envelope, event.started_at), True
    elif isinstance(event, TaskRetried):
        if run.status in ("failed", "cancelled"):  # a manual retry: running again, its outcome will come
            _finish(run, "running", None, news)
    elif isinstance(event, TaskCompleted | TaskFailed):
        if isinstance(event, TaskFailed) and event.will_retry:
            return  # an automatic retry follows; the run is not over
        if run.status not in FINAL:
            if run.started_at is None and event.started_at:  # a short attempt: no task.started
                run.started_at = parse_iso(event.started_at)
            status = "success" if isinstance(event, TaskCompleted) else "failed"
            _finish(run, status, _moment(envelope, event.completed_at), news)
    elif isinstance(event, TaskCancelled) and run.status not in FINAL:
        _finish(run, "cancelled", _moment(envelope, None), news)


def _finish(run: _Run, status: str, at: datetime | None, news: _ScheduleNews) -> None:
    previous = run.status
    run.status, run.finished_at, run.changed = status, at, True
    run.clear_cancel = run.clear_cancel or status in FINAL
    news.last_status.append(
        (run.fired_at, {"success": "success", "running": "running"}.get(status, "failed"))
    )
    if run.schedule_kind != CRON_JOB:
        return
    if previous in FINAL and status == "running":  # a retried run no longer counts
        news.counts.append(("successful_executions" if previous == "success" else "failed_executions", -1))
    elif status == "success":
        news.counts.append(("successful_executions", 1))
    elif status in FINAL:
        news.counts.append(("failed_executions", 1))


def _write_runs(uow: UnitOfWork, runs: list[_Run]) -> None:
    if not runs:
        return
    table = ScheduleRun.__table__
    clear = bindparam("clear", type_=Boolean())
    uow.session.execute(
        update(table)
        .where(table.c.id == bindparam("run_id"))
        .values(
            status=bindparam("new_status"),
            started_at=bindparam("new_started_at", type_=table.c.started_at.type),
            finished_at=bindparam("new_finished_at", type_=table.c.finished_at.type),
            # a run that ended is no longer to be cancelled (cancel_previous)
            cancel_requested_at=case((clear, None), else_=table.c.cancel_requested_at),
        ),
        [
            {
                "run_id": run.id,
                "new_status": run.status,
                "new_started_at": run.started_at,
                "new_finished_at": run.finished_at,
                "clear": run.clear_cancel,
            }
            for run in runs
        ],
    )


def _write_schedules(uow: UnitOfWork, news: dict[tuple[str, int], _ScheduleNews]) -> None:
    for model in (PeriodicTask, CronJob):
        told = {schedule_id: n for (kind, schedule_id), n in news.items() if kind == model.kind}
        if not told:
            continue
        table = model.__table__
        columns = [table.c.id, table.c.last_run_at, table.c.last_run_status]
        if model is CronJob:
            columns += [table.c.successful_executions, table.c.failed_executions]
        query = select(*columns).where(table.c.id.in_(sorted(told)))
        if is_postgres(uow.session.get_bind()):
            query = query.with_for_update()
        rows = []
        for current in uow.session.execute(query):
            values = dict(current._mapping)
            for fired_at, status in told[current.id].last_status:
                # only the newest run speaks for the schedule
                if current.last_run_at is None or fired_at >= current.last_run_at:
                    values["last_run_status"] = status
            for counter, step in told[current.id].counts:
                values[counter] = max(0, values[counter] + step)
            rows.append(
                {f"new_{k}": v for k, v in values.items() if k not in ("id", "last_run_at")}
                | {"sid": current.id}
            )
        if rows:
            names = [k.removeprefix("new_") for k in rows[0] if k.startswith("new_")]
            uow.session.execute(
                update(table)
                .where(table.c.id == bindparam("sid"))
                .values({name: bindparam(f"new_{name}") for name in names}),
                rows,
            )


def batch_handlers() -> dict[str, BatchEventHandler]:
    handlers: dict[str, BatchEventHandler] = {"task.created": apply_created}
    # one handler for every outcome, so that a stream of them is one run, not one per type
    return handlers | {event_type: apply_outcomes for event_type in OUTCOMES}
