"""A job's life, written once: its statuses, how it follows its task, what it can resume from,
and the job.* events that tell core (`is_resumable`, pause, resume, restart)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.exc import IntegrityError

from shared import task_states as ts
from shared.events import catalog
from shared.events.envelope import iso, utcnow
from shared.unit_of_work import UnitOfWork

from ..models import Checkpoint, JobState, PersistentJob, TaskRef

PENDING, RUNNING, PAUSED, INTERRUPTED = "pending", "running", "paused", "interrupted"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
STATUSES = (PENDING, RUNNING, PAUSED, INTERRUPTED, COMPLETED, FAILED, CANCELLED)
FINISHED = frozenset({COMPLETED, FAILED, CANCELLED})
# a job in one of these states may run again (resume, restart) ...
STOPPED = (PAUSED, FAILED, CANCELLED, INTERRUPTED)
# ... unless core is already running its task again (a lost worker's task is re-dispatched by
# core). A paused job is the exception: core holds a paused task until the job is resumed, and
# applies job.paused before the job.resumed that follows it, even when its task.updated saying
# "paused" has not reached this service yet.
TASK_ACTIVE = frozenset({ts.PENDING, ts.RETRYING, ts.RUNNING})
# stopped by accident: what auto-resume picks up (paused and cancelled jobs were stopped on purpose)
ACCIDENTS = (FAILED, INTERRUPTED)

TASK_TO_JOB = {
    ts.PENDING: PENDING,
    ts.RETRYING: PENDING,
    ts.RUNNING: RUNNING,
    ts.PAUSED: PAUSED,
    ts.COMPLETED: COMPLETED,
    ts.FAILED: FAILED,
    ts.CANCELLED: CANCELLED,
}

PRIORITIES = ts.PRIORITIES
PRIORITY_RANK = ts.PRIORITY_RANK

# the wake-up of persistence's auto-resume loop (shared/wakeups.py): a job was stopped by accident
AUTO_RESUME_SIGNAL = "auto_resume"


def is_stopped(job: PersistentJob) -> bool:
    return job.status in STOPPED and (job.status == PAUSED or job.base_task.status not in TASK_ACTIVE)


def stopped_clause() -> ColumnElement[bool]:
    """`is_stopped` in SQL (the caller joins TaskRef)."""
    return PersistentJob.status.in_(STOPPED) & or_(
        PersistentJob.status == PAUSED, TaskRef.status.not_in(TASK_ACTIVE)
    )


def recovery_points(job: PersistentJob) -> Any:
    """This run's recovery points, newest first (a restart starts a new run)."""
    stmt = select(Checkpoint).where(Checkpoint.job_id == job.id, Checkpoint.is_recovery_point.is_(True))
    if job.run_epoch_at is not None:
        stmt = stmt.where(Checkpoint.created_at >= job.run_epoch_at)
    return stmt.order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc())


def newest_recovery_point(uow: UnitOfWork, job: PersistentJob) -> Checkpoint | None:
    return uow.session.scalars(recovery_points(job).limit(1)).first()


JobEventT = TypeVar("JobEventT", bound=catalog.JobEvent)


def job_event(kind: type[JobEventT], job: PersistentJob, **extra: Any) -> JobEventT:
    """The job.* event `kind` about `job`; `extra` may override the job's own fields (a deleted
    job's status: "deleted")."""
    own: dict[str, Any] = {
        "job_id": job.id,
        "base_task": job.base_task_id,
        "task_id": job.base_task.task_id,
        "status": job.status,
        "can_resume": job.can_resume,
    }
    return kind(**(own | extra))


def emit(uow: UnitOfWork, kind: type[catalog.JobEvent], job: PersistentJob, **extra: Any) -> None:
    uow.publish(job_event(kind, job, **extra), job.brand_id)


def settle(uow: UnitOfWork, job: PersistentJob, status: str | None = None, *, announce: bool = True) -> bool:
    """Apply a new status (if given) and recompute `can_resume`; announce a change with
    job.updated unless the caller publishes a more specific event. Returns whether anything changed."""
    now = utcnow()
    before = (job.status, job.can_resume)
    if status is not None and status != job.status:
        job.status = status
        if status == RUNNING:
            job.started_at = job.started_at or now
            job.finished_at = None
        elif status in FINISHED:
            job.finished_at = now
        if status in (FAILED, CANCELLED, INTERRUPTED):
            job.interrupted_at = now
    uow.session.flush()
    job.can_resume = job.status != COMPLETED and newest_recovery_point(uow, job) is not None
    changed = (job.status, job.can_resume) != before
    if changed:
        job.updated_at = now
        if announce:
            emit(uow, catalog.JobUpdated, job)
    if job.status in ACCIDENTS and job.can_resume:
        uow.wake(AUTO_RESUME_SIGNAL)  # it may be due for an automatic resume
    return changed


def begin_attempt(job: PersistentJob, attempt: int, delivery: int = 1) -> None:
    """An attempt of the task runs the job: a newer one, or the same one delivered again by the
    broker. If the job was still running it (no result, no pause, no resume in between), the
    worker that ran it was lost."""
    newer = attempt > job.attempt
    redelivered = attempt == job.attempt and delivery > job.delivery
    if not (newer or redelivered):
        return
    if job.attempt and job.status in (RUNNING, INTERRUPTED):
        if job.status == RUNNING:
            job.interruptions_count += 1
        job.interruption_reason = f"attempt {job.attempt} was interrupted (worker lost)"
        job.interrupted_at = utcnow()
    job.attempt, job.delivery = attempt, delivery


def job_for_task(uow: UnitOfWork, task_pk: int, *, lock: bool = True) -> PersistentJob | None:
    stmt = select(PersistentJob).where(PersistentJob.base_task_id == task_pk)
    return uow.session.scalars(stmt.with_for_update(of=PersistentJob) if lock else stmt).first()


def new_job(
    brand_id: int, base_task_id: int, task_status: str, attempt: int, now: datetime, fields: dict[str, Any]
) -> dict[str, Any]:
    """The columns of a new job for a task in `task_status` (an ORM object or a row of a
    set-based insert are made from the same values)."""
    status = TASK_TO_JOB.get(task_status, PENDING)
    return {
        "brand_id": brand_id,
        "base_task_id": base_task_id,
        "status": status,
        "job_data": fields.get("job_data") or {},
        "current_step": fields.get("current_step"),
        "total_steps": fields.get("total_steps"),
        "completed_steps": fields.get("completed_steps") or 0,
        "progress_percentage": float(fields.get("progress_percentage") or 0.0),
        "can_resume": False,
        "checkpoints_count": 0,
        "attempt": attempt,
        "resume_count": 0,
        "auto_resume_count": 0,
        "restart_count": 0,
        "interruptions_count": 0,
        "started_at": now if status == RUNNING else None,
        "finished_at": now if status in FINISHED else None,
        "created_at": now,
        "updated_at": now,
    }


def add_task_ref(
    uow: UnitOfWork,
    pk: int,
    brand_id: int,
    task_id: str,
    task_type: str,
    *,
    status: str = ts.PENDING,
    priority: str = "normal",
) -> TaskRef:
    """A new row for a task this service had not heard of; its attempt is 0 until core's events
    (or the worker's own call) say which one runs."""
    ref = TaskRef(
        id=pk,
        brand_id=brand_id,
        task_id=task_id,
        task_type=task_type,
        status=status,
        priority=priority,
        attempt=0,
        updated_at=utcnow(),
    )
    uow.session.add(ref)
    uow.session.flush()
    return ref


def create_job(uow: UnitOfWork, ref: TaskRef, fields: dict[str, Any] | None = None) -> PersistentJob:
    """A job for `ref` (the caller checked there is none). A concurrent creator of the same job
    makes the flush raise IntegrityError: the caller's transaction is retried (or redelivered)."""
    values = new_job(ref.brand_id, ref.id, ref.status, ref.attempt, utcnow(), fields or {})
    job = PersistentJob(**values)
    job.base_task = ref
    uow.session.add(job)
    uow.session.flush()
    emit(uow, catalog.JobCreated, job)
    return job


def get_or_create(uow: UnitOfWork, ref: TaskRef) -> PersistentJob:
    return job_for_task(uow, ref.id) or create_job(uow, ref)


def delete_job(uow: UnitOfWork, job: PersistentJob) -> int:
    """Drop the job with its checkpoints and state; core learns it is no longer resumable.
    Returns how many checkpoint bytes were freed."""
    freed = sum(
        uow.session.scalars(select(Checkpoint.stored_size_bytes).where(Checkpoint.job_id == job.id)).all()
    )
    uow.session.execute(delete(Checkpoint).where(Checkpoint.job_id == job.id))
    uow.session.execute(delete(JobState).where(JobState.job_id == job.id))
    job.can_resume = False
    # announced as a final job.updated: core's is_resumable turns false, no new event type needed
    emit(uow, catalog.JobUpdated, job, status="deleted")
    uow.session.delete(job)
    return freed


def insert_race_safe(uow: UnitOfWork, attempt: Any) -> Any:
    """Run `attempt(uow)`; a unique-key race with a concurrent creator rolls back and runs it once
    more, when the other side's row is visible and is found instead of created."""
    try:
        return attempt(uow)
    except IntegrityError:
        uow.rollback()
        return attempt(uow)


def boosted(priority: str, levels: int) -> str:
    rank = min(len(PRIORITIES) - 1, PRIORITY_RANK.get(priority, 1) + max(0, levels))
    return PRIORITIES[rank]


def estimated_completion(job: PersistentJob, now: datetime | None = None) -> str | None:
    """From the pace so far: the time spent since the first start over the progress made."""
    if job.status != RUNNING or job.started_at is None or not 0 < job.progress_percentage < 100:
        return None
    now = now or utcnow()
    elapsed = now - job.started_at
    remaining = elapsed * ((100 - job.progress_percentage) / job.progress_percentage)
    return iso(now + remaining)
