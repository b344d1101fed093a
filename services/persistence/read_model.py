"""What persistence knows of core's tasks, learnt from core's task events (never a worker's
report), and how a job follows its task.

Bindings: every task event, task.created and task.deleted included, of persistent tasks only:
core gives those the `persistent` header and the broker drops the others (see `FILTERED`), so a
plain task costs this service nothing. A task's row is made by the first of: its task.created
(a task of a persistent type is persistent from its creation), the worker's for-task call (the
worker may start first), or `POST /persistent-jobs/`, which asks core for a task this service has
not heard of. A task becomes persistent in core when core hears of its job (job.created); the
events core sent before carried no header, so core then states the task's current status,
attempt and priority in a task.updated with the header, which `on_updated` applies under the
rules below: nothing of what happened in between is lost.

task.created and task.deleted are applied a batch at a time with set-based statements; the other
events (a few per job) go one by one through the ORM and the job's lifecycle.

Never backwards: an event of an older attempt changes nothing, a late `started` after its
attempt's result changes nothing, and a final status sticks until a newer attempt starts or core's
task.retried brings the task back. The worker's own for-task call may come before task.created (a
job needs a row to hang on): task.created then completes that row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, tuple_

from shared import task_states as ts
from shared.db import upsert
from shared.events.bus import FilteredBindings
from shared.events.catalog import (
    PERSISTENT_HEADER,
    JobCreated,
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskDeleted,
    TaskFailed,
    TaskProgress,
    TaskRetried,
    TaskStarted,
    TaskUpdated,
    read,
)
from shared.events.envelope import Envelope, utcnow
from shared.events.inbox_consumer import BatchEventHandler, EventHandler
from shared.unit_of_work import UnitOfWork

from .jobs import lifecycle as lc
from .models import PersistentJob, TaskRef

# the events this service acts on, of persistent tasks only (the `persistent` header), all bound
# through the filter
PERSISTENT_ONLY = (
    "task.created",
    "task.deleted",
    "task.updated",
    "task.started",
    "task.progress",
    "task.completed",
    "task.failed",
    "task.retried",
    "task.cancelled",
)
FILTERED: FilteredBindings = {event_type: {PERSISTENT_HEADER: "1"} for event_type in PERSISTENT_ONLY}

# the order of a task's statuses within one attempt: a status never gives way to an earlier one
_STAGE = {ts.PENDING: 0, ts.RETRYING: 0, ts.RUNNING: 1}  # paused and the final ones: 2


def _stage(status: str) -> int:
    return _STAGE.get(status, 2)


# ------------------------------------------------------------- created and deleted: set-based batches


def apply_created(uow: UnitOfWork, envelopes: Sequence[Envelope]) -> None:
    """task.created of a batch: one upsert of the task rows, one insert of the jobs of persistent
    tasks. A row the worker's for-task call made first is completed (task_id, type, priority),
    never given another brand; a job that exists already is kept."""
    now = utcnow()
    tasks: dict[int, dict[str, Any]] = {}
    persistent: set[int] = set()
    for envelope in envelopes:
        if envelope.brand_id is None:
            continue
        task = read(envelope.data, TaskCreated)
        first = tasks.get(task.id)
        if first is not None and first["brand_id"] != envelope.brand_id:
            continue  # as one by one: the second brand finds the first one's row and is ignored
        tasks[task.id] = {
            "id": task.id,
            "brand_id": envelope.brand_id,
            "task_id": task.task_id,
            "task_type": task.task_type,
            "status": task.status,
            "priority": task.priority,
            "attempt": 0,
            "updated_at": now,
        }
        if task.persistent:
            persistent.add(task.id)
    if not tasks:
        return
    refs = TaskRef.__table__
    statement = upsert(uow.session.get_bind(), refs)
    statement = statement.on_conflict_do_update(
        index_elements=[refs.c.id],
        set_={name: statement.excluded[name] for name in ("task_id", "task_type", "priority", "updated_at")},
        where=refs.c.brand_id == statement.excluded.brand_id,
    ).returning(refs.c.id, refs.c.status, refs.c.attempt)
    # one multi-row statement (SQLAlchemy's insertmanyvalues: the statement is compiled once and
    # cached, the rows are sent as one VALUES list); the rows of this batch's brands come back as
    # they are now (a for-task call may have run them)
    mine = uow.session.execute(statement, list(tasks.values())).all()
    wanted = [row for row in mine if row.id in persistent]
    if wanted:
        _create_jobs(uow, tasks, wanted)


def _create_jobs(uow: UnitOfWork, tasks: dict[int, dict[str, Any]], refs: Sequence[Any]) -> None:
    now = utcnow()
    jobs = PersistentJob.__table__
    rows = [lc.new_job(tasks[ref.id]["brand_id"], ref.id, ref.status, ref.attempt, now, {}) for ref in refs]
    statement = (
        upsert(uow.session.get_bind(), jobs)
        .on_conflict_do_nothing(index_elements=[jobs.c.base_task_id])
        .returning(jobs.c.id, jobs.c.base_task_id, jobs.c.status)
    )
    created = sorted(uow.session.execute(statement, rows).all(), key=lambda job: job.id)
    for job in created:
        task = tasks[job.base_task_id]
        event = JobCreated(
            job_id=job.id, base_task=job.base_task_id, task_id=task["task_id"], status=job.status
        )
        uow.publish(event, task["brand_id"])


def apply_deleted(uow: UnitOfWork, envelopes: Sequence[Envelope]) -> None:
    """task.deleted of a batch: the jobs of those tasks go (announced, with their checkpoints),
    then their rows, in one statement."""
    doomed = {
        (read(envelope.data, TaskDeleted).id, envelope.brand_id)
        for envelope in envelopes
        if envelope.brand_id is not None
    }
    if not doomed:
        return
    jobs = uow.session.scalars(
        select(PersistentJob)
        .where(PersistentJob.base_task_id.in_({task for task, _ in doomed}))
        .with_for_update(of=PersistentJob)
    ).all()
    for job in jobs:
        if (job.base_task_id, job.brand_id) in doomed:
            lc.delete_job(uow, job)
    uow.session.flush()
    refs = TaskRef.__table__
    uow.session.execute(delete(refs).where(tuple_(refs.c.id, refs.c.brand_id).in_(sorted(doomed))))


# ------------------------------------------------------------------ the others: one by one (ORM)


def task_ref(uow: UnitOfWork, task_pk: int, brand_id: int | None, create: Any = None) -> TaskRef | None:
    """The task's row, locked; None for another brand's task, or for an unknown one unless
    `create` (the event that overtook task.created, whose fields fill a new row)."""
    if brand_id is None:
        return None
    ref = uow.session.scalars(select(TaskRef).where(TaskRef.id == task_pk).with_for_update()).first()
    if ref is not None:
        return ref if ref.brand_id == brand_id else None
    if create is None:
        return None
    return lc.add_task_ref(
        uow,
        task_pk,
        brand_id,
        create.task_id,
        getattr(create, "task_type", ""),
        priority=getattr(create, "priority", "normal"),
    )


def _follow(uow: UnitOfWork, ref: TaskRef, *, reason: str | None = None, interrupted: bool = False) -> None:
    """Bring the task's job (if any) to the status its task now has."""
    job = lc.job_for_task(uow, ref.id)
    if job is None:
        return
    if job.status == lc.PENDING and job.attempt > 0 and ref.attempt <= job.attempt:
        # resumed or restarted, the job waits for core's next attempt: late news of the attempt
        # it ran before (its start, its pause) must not move it (nor pause the next one)
        return
    status = lc.INTERRUPTED if interrupted else lc.TASK_TO_JOB.get(ref.status, job.status)
    if job.status == lc.PAUSED and status in (lc.PENDING, lc.RUNNING) and ref.attempt <= job.attempt:
        # its handler paused this attempt at a checkpoint: news of the attempt's start, which a
        # worker reports late (after its hold window), is older than the pause
        return
    if status == lc.PENDING and job.status == lc.INTERRUPTED:
        status = lc.INTERRUPTED  # still waiting to run again after losing its worker
    if status == lc.PENDING and job.status == lc.RUNNING and job.attempt >= ref.attempt:
        status = lc.RUNNING  # its handler already runs this attempt (the for-task call came first)
    if status == lc.RUNNING:
        lc.begin_attempt(job, ref.attempt)
    if interrupted and job.status != lc.INTERRUPTED:
        job.interruptions_count += 1
    if reason and status in (lc.FAILED, lc.CANCELLED, lc.INTERRUPTED):
        job.interruption_reason = reason[:2000]
    lc.settle(uow, job, status)


def on_updated(uow: UnitOfWork, env: Envelope) -> None:
    """Fields changed, or core moved the status on its own: a task sent back to `pending` with a
    new attempt while its job was running lost its worker (the job is interrupted and the new
    attempt continues from the newest recovery point); paused and resumed jobs follow too."""
    event = read(env.data, TaskUpdated)
    ref = task_ref(uow, event.id, env.brand_id)
    if ref is None:
        return
    changed = event.changed
    if changed.get("priority"):
        ref.priority = str(changed["priority"])
    ref.updated_at = utcnow()
    status = changed.get("status")
    if status is None:
        return
    attempt = int(changed.get("attempt") or ref.attempt)
    if attempt < ref.attempt or (attempt == ref.attempt and _stage(status) <= _stage(ref.status)):
        return  # older news
    job = lc.job_for_task(uow, ref.id)
    ref.status, ref.attempt = status, attempt
    if job is not None and job.attempt > attempt:
        # the job already runs a newer attempt (a resumed job's for-task call came first): news
        # of an older one (its pause) must not stop it
        return
    if status == ts.COMPLETED:  # core's statement of a task that completed before it was persistent
        _complete(uow, ref)
        return
    lost = status in (ts.PENDING, ts.RETRYING) and job is not None and job.status == lc.RUNNING
    lost = lost and job is not None and job.attempt < attempt
    _follow(uow, ref, reason=event.reason or "its worker was lost", interrupted=lost)


def on_started(uow: UnitOfWork, env: Envelope) -> None:
    event = read(env.data, TaskStarted)
    ref = task_ref(uow, event.id, env.brand_id, create=event)
    if ref is None or event.attempt < ref.attempt:
        return
    if event.attempt == ref.attempt and ref.status not in (ts.PENDING, ts.RETRYING):
        return  # this attempt already moved on (a late started after its result or its pause)
    ref.attempt, ref.status, ref.updated_at = event.attempt, ts.RUNNING, utcnow()
    _follow(uow, ref)


def on_progress(uow: UnitOfWork, env: Envelope) -> None:
    event = read(env.data, TaskProgress)
    ref = task_ref(uow, event.id, env.brand_id)
    if ref is None or event.attempt != ref.attempt or ref.status != ts.RUNNING:
        return
    job = lc.job_for_task(uow, ref.id)
    if job is not None and job.status == lc.RUNNING:
        progress = max(0.0, min(100.0, float(event.progress_percentage)))
        job.progress_percentage = max(job.progress_percentage, progress)
        job.updated_at = utcnow()


def on_finished(uow: UnitOfWork, env: Envelope) -> None:
    """task.completed / task.failed of an attempt (a short attempt has no task.started)."""
    event: TaskCompleted | TaskFailed = (
        read(env.data, TaskCompleted) if env.event_type == "task.completed" else read(env.data, TaskFailed)
    )
    ref = task_ref(uow, event.id, env.brand_id, create=event)
    if ref is None or event.attempt < ref.attempt:
        return
    if event.attempt == ref.attempt and ref.status not in (ts.PENDING, ts.RETRYING, ts.RUNNING):
        return  # paused or already settled: core ignores it too
    ref.attempt, ref.updated_at = event.attempt, utcnow()
    if isinstance(event, TaskCompleted):
        ref.status = ts.COMPLETED
        _complete(uow, ref)
        return
    ref.status = ts.RETRYING if event.will_retry else ts.FAILED
    _follow(uow, ref, reason=event.error_message or "failed", interrupted=event.dead_lettered)


def _complete(uow: UnitOfWork, ref: TaskRef) -> None:
    job = lc.job_for_task(uow, ref.id)
    if job is not None:
        job.progress_percentage = 100.0
        if job.total_steps is not None:
            job.completed_steps = job.total_steps
    _follow(uow, ref)


def on_retried(uow: UnitOfWork, env: Envelope) -> None:
    event = read(env.data, TaskRetried)
    ref = task_ref(uow, event.id, env.brand_id)
    if ref is None or ref.status not in (ts.FAILED, ts.CANCELLED, ts.RETRYING):
        return
    ref.status = ts.RETRYING if event.reason == "automatic" else ts.PENDING
    ref.updated_at = utcnow()
    _follow(uow, ref)


def on_cancelled(uow: UnitOfWork, env: Envelope) -> None:
    event = read(env.data, TaskCancelled)
    ref = task_ref(uow, event.id, env.brand_id)
    if ref is None or ref.status == ts.COMPLETED:
        return
    if event.attempt is not None and event.attempt < ref.attempt:
        return  # a newer attempt runs: core re-ran the task after this cancel
    ref.status, ref.updated_at = ts.CANCELLED, utcnow()
    ref.attempt = max(ref.attempt, event.attempt or 0)
    _follow(uow, ref, reason="cancelled")


def event_handlers() -> dict[str, EventHandler]:
    return {
        "task.updated": on_updated,
        "task.started": on_started,
        "task.progress": on_progress,
        "task.completed": on_finished,
        "task.failed": on_finished,
        "task.retried": on_retried,
        "task.cancelled": on_cancelled,
    }


def batch_handlers() -> dict[str, BatchEventHandler]:
    return {"task.created": apply_created, "task.deleted": apply_deleted}
