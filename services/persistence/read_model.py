"""What persistence knows of core's tasks, from task.* events (never a call to core), and how a
job follows its task. Never backwards: an event of an older attempt changes nothing, a late
`started` after its attempt's result changes nothing, and a final status sticks until a newer
attempt starts or core's task.retried brings the task back. Worker events and the worker's own
for-task call may overtake task.created; the row is then created from what they say."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from shared.events.envelope import Envelope, utcnow
from shared.unit_of_work import UnitOfWork

from .jobs import lifecycle as lc
from .models import TaskRef

FINAL = frozenset({"completed", "failed", "cancelled"})


def task_ref(uow: UnitOfWork, env: Envelope, *, create: bool = True) -> TaskRef | None:
    """The event's task, locked; None for another brand's task or (create=False) an unknown one."""
    raw = env.data.get("id")
    if raw is None or env.brand_id is None:
        return None
    ref = uow.session.scalars(select(TaskRef).where(TaskRef.id == int(raw)).with_for_update()).first()
    if ref is not None:
        return ref if ref.brand_id == env.brand_id else None
    if not create:
        return None
    ref = TaskRef(
        id=int(raw),
        brand_id=env.brand_id,
        task_id=str(env.data.get("task_id") or ""),
        task_type=str(env.data.get("task_type") or ""),
        status="pending",
        priority=str(env.data.get("priority") or "normal"),
        attempt=0,
        updated_at=utcnow(),
    )
    uow.session.add(ref)
    uow.session.flush()
    return ref


def _attempt(env: Envelope) -> int:
    return int(env.data.get("attempt") or 0)


def _follow(uow: UnitOfWork, ref: TaskRef, *, reason: str | None = None, interrupted: bool = False) -> None:
    """Bring the task's job (if any) to the status its task now has."""
    job = lc.job_for_task(uow, ref.id)
    if job is None:
        return
    status = lc.INTERRUPTED if interrupted else lc.TASK_TO_JOB.get(ref.status, job.status)
    if job.status == lc.INTERRUPTED and status == lc.PENDING:
        status = lc.INTERRUPTED  # still waiting to run again after losing its worker
    if status == lc.RUNNING:
        lc.begin_attempt(job, ref.attempt)
    if interrupted and job.status != lc.INTERRUPTED:
        job.interruptions_count += 1
    if reason and status in (lc.FAILED, lc.CANCELLED, lc.INTERRUPTED):
        job.interruption_reason = reason[:2000]
    lc.settle(uow, job, status)


def on_created(uow: UnitOfWork, env: Envelope) -> None:
    ref = task_ref(uow, env)
    if ref is None:
        return
    data = env.data
    ref.task_id = str(data.get("task_id") or ref.task_id)
    ref.task_type = str(data.get("task_type") or ref.task_type)
    ref.priority = str(data.get("priority") or ref.priority)
    ref.updated_at = utcnow()
    if data.get("persistent"):
        lc.get_or_create(uow, ref)


def on_updated(uow: UnitOfWork, env: Envelope) -> None:
    ref = task_ref(uow, env, create=False)
    changed: dict[str, Any] = env.data.get("changed") or {}
    if ref is not None and changed.get("priority"):
        ref.priority = str(changed["priority"])
        ref.updated_at = utcnow()


def on_started(uow: UnitOfWork, env: Envelope) -> None:
    ref = task_ref(uow, env)
    attempt = _attempt(env)
    if ref is None or attempt < ref.attempt:
        return
    if attempt == ref.attempt and ref.status not in ("pending", "retrying"):
        return  # this attempt already moved on (a late started after its result or its pause)
    ref.attempt, ref.status, ref.updated_at = attempt, "running", utcnow()
    _follow(uow, ref)


def on_progress(uow: UnitOfWork, env: Envelope) -> None:
    ref = task_ref(uow, env, create=False)
    if ref is None or _attempt(env) != ref.attempt or ref.status != "running":
        return
    job = lc.job_for_task(uow, ref.id)
    if job is not None and job.status == lc.RUNNING:
        progress = max(0.0, min(100.0, float(env.data.get("progress_percentage") or 0)))
        job.progress_percentage = max(job.progress_percentage, progress)
        job.updated_at = utcnow()


def on_finished(uow: UnitOfWork, env: Envelope) -> None:
    """task.completed / task.failed of an attempt."""
    ref = task_ref(uow, env)
    attempt = _attempt(env)
    if ref is None or attempt < ref.attempt:
        return
    if attempt == ref.attempt and ref.status not in ("pending", "retrying", "running"):
        return  # paused or already settled: core ignores it too
    ref.attempt, ref.updated_at = attempt, utcnow()
    if env.event_type == "task.completed":
        ref.status = "completed"
        job = lc.job_for_task(uow, ref.id)
        if job is not None:
            job.progress_percentage = 100.0
            if job.total_steps is not None:
                job.completed_steps = job.total_steps
        _follow(uow, ref)
        return
    ref.status = "retrying" if env.data.get("will_retry") else "failed"
    message = str(env.data.get("error_message") or "failed")
    _follow(uow, ref, reason=message, interrupted=bool(env.data.get("dead_lettered")))


def on_retried(uow: UnitOfWork, env: Envelope) -> None:
    ref = task_ref(uow, env, create=False)
    if ref is None or ref.status not in ("failed", "cancelled", "retrying"):
        return
    ref.status = "retrying" if env.data.get("reason") == "automatic" else "pending"
    ref.updated_at = utcnow()
    _follow(uow, ref)


def on_cancelled(uow: UnitOfWork, env: Envelope) -> None:
    ref = task_ref(uow, env, create=False)
    if ref is None or ref.status == "completed":
        return
    ref.status, ref.updated_at = "cancelled", utcnow()
    _follow(uow, ref, reason="cancelled")


def on_deleted(uow: UnitOfWork, env: Envelope) -> None:
    ref = task_ref(uow, env, create=False)
    if ref is None:
        return
    job = lc.job_for_task(uow, ref.id)
    if job is not None:
        lc.delete_job(uow, job)
        uow.session.flush()
    uow.session.delete(ref)


def on_worker_offline(uow: UnitOfWork, env: Envelope) -> None:
    """The jobs a lost worker was running are interrupted; core runs their tasks again and the new
    attempt continues from the newest recovery point."""
    task_ids = [str(t) for t in env.data.get("task_ids") or []]
    if not task_ids:
        return
    numeric = [int(t) for t in task_ids if t.isdigit()]
    refs = uow.session.scalars(
        select(TaskRef)
        .where(or_(TaskRef.task_id.in_(task_ids), TaskRef.id.in_(numeric)), TaskRef.status == "running")
        .with_for_update()
    ).all()
    for ref in refs:
        ref.status, ref.updated_at = "pending", utcnow()
        _follow(uow, ref, reason=f"worker {env.data.get('worker_name')} went offline", interrupted=True)


def read_model_handlers() -> dict[str, Any]:
    return {
        "task.created": on_created,
        "task.updated": on_updated,
        "task.started": on_started,
        "task.progress": on_progress,
        "task.completed": on_finished,
        "task.failed": on_finished,
        "task.retried": on_retried,
        "task.cancelled": on_cancelled,
        "task.deleted": on_deleted,
        "worker.offline": on_worker_offline,
    }
