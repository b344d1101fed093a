"""Job use cases: create/update/delete, and the actions of §3 (resume, pause, restart,
auto-resume, cleanup-old, validate-config). Each owns its rules and writes its events to the
outbox in the caller's transaction; none knows about HTTP."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from shared.core_client import Caller, CoreTasks, CoreUnavailable
from shared.crud import get_owned, update_fields
from shared.domain_errors import Conflict, DomainError, InvalidField, Unavailable
from shared.events import catalog
from shared.events.envelope import iso, utcnow
from shared.unit_of_work import UnitOfWork

from ..checkpoints import codec
from ..models import Checkpoint, PersistentJob, TaskRef
from . import lifecycle as lc

MB = 1024 * 1024
MAX_TIMEOUT_HOURS = 10080 / 60  # core's largest timeout_minutes


def get_job(session: Session, brand_id: int, pk: int, *, lock: bool = False) -> PersistentJob:
    if lock:
        # the task's row before the job's, the event consumers' order: a second update of the job
        # checks its foreign key with a key-share lock on the task's row, which, taken after the
        # job's lock, deadlocked with a consumer holding the task's row and wanting the job. Key
        # share, no more: it still lets a worker's checkpoint (which holds the job) check its keys.
        task = select(PersistentJob.base_task_id).where(PersistentJob.id == pk).scalar_subquery()
        session.execute(
            select(TaskRef.id).where(TaskRef.id == task).with_for_update(read=True, key_share=True)
        )
    return get_owned(session, PersistentJob, brand_id, pk, "Persistent job", lock=lock)


def create_job(
    uow: UnitOfWork, core: CoreTasks, caller: Caller, brand_id: int, fields: dict[str, Any]
) -> PersistentJob:
    """A job for an existing task. This service hears only of persistent tasks, so a task it
    does not know yet is asked of core with the caller's own credentials (core's scope decides)."""
    pk = fields["base_task"]
    ref = uow.session.get(TaskRef, pk)
    if ref is None:
        ref = lc.insert_race_safe(uow, lambda u: _task_ref_from_core(u, core, caller, brand_id, pk))
    if ref.brand_id != brand_id:
        raise InvalidField("base_task", "Unknown task.")
    if lc.job_for_task(uow, ref.id, lock=False) is not None:
        raise InvalidField("base_task", "This task already has a persistent job.")
    return lc.create_job(uow, ref, fields)


def _task_ref_from_core(uow: UnitOfWork, core: CoreTasks, caller: Caller, brand_id: int, pk: int) -> TaskRef:
    """The row of a task core shows the caller. Its attempt is not in core's answer: 0 until core,
    hearing of the job, states the task's current status and attempt (a task.updated)."""
    ref = uow.session.get(TaskRef, pk)  # a concurrent creator's row, on the second try
    if ref is not None:
        return ref
    try:
        task = core.get_task(caller, pk)
    except CoreUnavailable:
        raise Unavailable("core is unavailable; try again shortly.") from None
    if task is None or (task.get("brand") or {}).get("id") != brand_id:
        raise InvalidField("base_task", "Unknown task.")
    return lc.add_task_ref(
        uow,
        pk,
        brand_id,
        task["task_id"],
        task["task_type"],
        status=task["status"],
        priority=task["priority"],
    )


def update_job(uow: UnitOfWork, brand_id: int, pk: int, fields: dict[str, Any]) -> PersistentJob:
    job = get_job(uow.session, brand_id, pk, lock=True)
    update_fields(job, fields, utcnow())
    if "progress_percentage" not in fields and job.total_steps and "completed_steps" in fields:
        job.progress_percentage = round(
            100.0 * min(job.completed_steps, job.total_steps) / job.total_steps, 2
        )
    lc.settle(uow, job)
    return job


def delete_job(uow: UnitOfWork, brand_id: int, pk: int) -> None:
    job = get_job(uow.session, brand_id, pk, lock=True)
    if job.status == lc.RUNNING:
        raise Conflict(
            "INVALID_JOB_STATE",
            "A running job cannot be deleted; pause it or cancel its task first.",
            current_status=job.status,
        )
    lc.delete_job(uow, job)


def _not_resumable(job: PersistentJob, detail: str) -> Conflict:
    return Conflict(
        "JOB_NOT_RESUMABLE",
        detail,
        current_status=job.status,
        can_resume=job.can_resume,
        allowed_statuses=list(lc.STOPPED),
    )


def _checkpoint_of(uow: UnitOfWork, job: PersistentJob, checkpoint_id: int, field: str) -> Checkpoint:
    checkpoint = uow.session.get(Checkpoint, checkpoint_id)
    if checkpoint is None or checkpoint.job_id != job.id:
        raise InvalidField(field, "No such checkpoint for this job.")
    return checkpoint


def _verify(checkpoint: Checkpoint) -> None:
    try:
        codec.verified(checkpoint.payload, checkpoint.is_compressed, checkpoint.checksum)
    except codec.CorruptedCheckpoint:
        raise codec.corrupted_error(checkpoint.id) from None


def resume_job(
    uow: UnitOfWork, brand_id: int, pk: int, options: dict[str, Any], *, auto: bool = False
) -> dict[str, Any]:
    job = get_job(uow.session, brand_id, pk, lock=True)
    if not lc.is_stopped(job):
        raise _not_resumable(job, f"A {job.status} job cannot be resumed.")
    if not job.can_resume:
        raise _not_resumable(job, "This job has no recovery point to resume from; restart it instead.")
    checkpoint: Checkpoint | None
    if options.get("from_checkpoint") is not None:
        checkpoint = _checkpoint_of(uow, job, options["from_checkpoint"], "from_checkpoint")
    else:
        checkpoint = lc.newest_recovery_point(uow, job)
        if checkpoint is None:
            raise _not_resumable(job, "This job has no recovery point to resume from; restart it instead.")
    _verify(checkpoint)
    now = utcnow()
    priority = lc.boosted(job.base_task.priority, options.get("priority_boost") or 0)
    job.resume_checkpoint_id = checkpoint.id
    job.resume_from_step = checkpoint.step_name
    job.resumed_at = now
    job.pause_requested_at = None
    job.resume_count += 1
    job.auto_resume_count += 1 if auto else 0
    if options.get("reset_current_step"):
        job.current_step = checkpoint.step_name
    # core puts the task back to pending (and raises its priority) on job.resumed
    lc.settle(uow, job, lc.PENDING, announce=False)
    lc.emit(
        uow,
        catalog.JobResumed,
        job,
        checkpoint_id=checkpoint.id,
        from_step=checkpoint.step_name,
        restart=False,
        priority=priority,
        automatic=auto,
    )
    return {
        "message": "Job resumed; its task is queued and continues from the checkpoint.",
        "job_id": job.id,
        "resumed_from": {
            "checkpoint_id": checkpoint.id,
            "step_name": checkpoint.step_name,
            "created_at": iso(checkpoint.created_at),
        },
        "current_step": job.current_step,
        "progress_percentage": job.progress_percentage,
        "estimated_completion": lc.estimated_completion(job),
        "resumed_at": iso(now),
        "priority": priority,
    }


def pause_job(uow: UnitOfWork, brand_id: int, pk: int) -> dict[str, Any]:
    job = get_job(uow.session, brand_id, pk, lock=True)
    if job.status != lc.RUNNING:
        raise Conflict(
            "INVALID_JOB_STATE",
            f"Only a running job can be paused; this one is {job.status}.",
            current_status=job.status,
            allowed_statuses=[lc.RUNNING],
        )
    now = utcnow()
    job.pause_requested_at = job.pause_requested_at or now
    job.updated_at = now
    return {
        "message": "Pause requested; the job stops at its next checkpoint and keeps its progress.",
        "job_id": job.id,
        "paused_at": iso(job.pause_requested_at),
        "current_progress": job.progress_percentage,
        "checkpoint_created": False,
        "can_resume": job.can_resume,
        "status": job.status,
    }


def restart_job(uow: UnitOfWork, brand_id: int, pk: int, options: dict[str, Any]) -> dict[str, Any]:
    job = get_job(uow.session, brand_id, pk, lock=True)
    if not lc.is_stopped(job):
        raise Conflict(
            "INVALID_JOB_STATE",
            f"A {job.status} job cannot be restarted (pause it, or wait until it stops).",
            current_status=job.status,
            allowed_statuses=list(lc.STOPPED),
        )
    from_step, preserve = options.get("from_step"), options["preserve_checkpoints"]
    start_at: Checkpoint | None = None
    if from_step and preserve:
        start_at = uow.session.scalars(
            select(Checkpoint)
            .where(Checkpoint.job_id == job.id, Checkpoint.step_name == from_step)
            .order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc())
        ).first()
        if start_at is not None:
            _verify(start_at)
    deleted = 0
    if not preserve:
        deleted = len(uow.session.scalars(select(Checkpoint.id).where(Checkpoint.job_id == job.id)).all())
        uow.session.execute(delete(Checkpoint).where(Checkpoint.job_id == job.id))
        job.checkpoints_count, job.last_checkpoint_at = 0, None
    now = utcnow()
    if options["reset_progress"]:
        job.progress_percentage, job.completed_steps, job.current_step = 0.0, 0, from_step
    job.run_epoch_at = now
    job.resume_checkpoint_id = start_at.id if start_at else None
    job.resume_from_step = from_step
    job.pause_requested_at = None
    job.restart_count += 1
    job.started_at = None
    lc.settle(uow, job, lc.PENDING, announce=False)  # core re-runs the task on job.restarted
    lc.emit(
        uow,
        catalog.JobRestarted,
        job,
        checkpoint_id=start_at.id if start_at else None,
        from_step=from_step,
        restart=True,
    )
    return {
        "message": "Job restarted; its task is queued.",
        "job_id": job.id,
        "restarted_at": iso(now),
        "from_step": from_step,
        "from_checkpoint": start_at.id if start_at else None,
        "checkpoints_preserved": preserve,
        "checkpoints_deleted": deleted,
        "progress_percentage": job.progress_percentage,
        "status": job.status,
    }


def auto_resume(
    uow_factory: Callable[[], UnitOfWork],
    brand_id: int | None,
    options: dict[str, Any],
    max_per_job: int,
    *,
    stopped_before: datetime | None = None,
    refused: dict[int, datetime] | None = None,
) -> dict[str, Any]:
    """Resume the best jobs stopped by accident: failed or interrupted (never paused or cancelled:
    those were stopped on purpose), resumable, whose task core is not already running again, at
    most `max_per_job` automatic resumes each (a handler that always fails must not loop).
    Highest priority first, then the most advanced. Each resume is its own transaction, so one
    refusal (a corrupted checkpoint) does not undo the others. `stopped_before`: only jobs
    stopped by then (the loop's delay); `refused` (the loop's memory) holds the jobs whose
    resume was refused, with when they had stopped: they are skipped until they stop anew."""
    since = utcnow() - timedelta(hours=options["max_interruption_hours"])
    threshold = lc.PRIORITY_RANK[options["priority_threshold"]]
    with uow_factory() as uow:
        stmt = (
            select(PersistentJob)
            .join(TaskRef, TaskRef.id == PersistentJob.base_task_id)
            .where(_accidents())
            .order_by(PersistentJob.progress_percentage.desc(), PersistentJob.id)
            .limit(500)
        )
        if brand_id is not None:
            stmt = stmt.where(PersistentJob.brand_id == brand_id)
        if stopped_before is not None:
            stmt = stmt.where(PersistentJob.interrupted_at <= stopped_before)
        jobs = sorted(
            uow.session.scalars(stmt).all(), key=lambda j: -lc.PRIORITY_RANK.get(j.base_task.priority, 1)
        )
        candidates = [
            (
                job.id,
                job.brand_id,
                job.interrupted_at,
                _skip_reason(job, threshold, since, max_per_job, options),
            )
            for job in jobs
        ]
    results: list[dict[str, Any]] = []
    resumed = 0
    for job_id, job_brand, stopped_at, reason in candidates:
        if reason is None and refused is not None and refused.get(job_id) == stopped_at:
            reason = "its resume was refused since it stopped"
        if reason is None and resumed >= options["max_jobs"]:
            reason = f"max_jobs ({options['max_jobs']}) reached"
        if reason is not None:
            results.append({"job_id": job_id, "status": "skipped", "reason": reason})
            continue
        try:
            with uow_factory() as uow:
                resume_job(uow, job_brand, job_id, {}, auto=True)
                uow.commit()
        except DomainError as error:
            results.append({"job_id": job_id, "status": "skipped", "reason": error.detail})
            if refused is not None and stopped_at is not None:
                refused[job_id] = stopped_at
            continue
        resumed += 1
        results.append({"job_id": job_id, "status": "resumed", "message": "Job resumed."})
    return {"resumed_jobs": resumed, "skipped_jobs": len(results) - resumed, "results": results}


def _accidents() -> Any:
    """Jobs stopped by accident, resumable, whose task core is not running again (TaskRef joined)."""
    return (
        PersistentJob.status.in_(lc.ACCIDENTS)
        & PersistentJob.can_resume.is_(True)
        & TaskRef.status.not_in(lc.TASK_ACTIVE)
    )


def next_auto_resume(
    session: Session, options: dict[str, Any], max_per_job: int, excluded: set[int]
) -> datetime | None:
    """When the newest of the jobs auto-resume would take stopped (None: there is none). The
    jobs it would skip for good (too old, resumed too often, below the thresholds) and those
    whose resume was refused (`excluded`) do not count: they are not due, ever."""
    since = utcnow() - timedelta(hours=options["max_interruption_hours"])
    low = [
        p for p, rank in lc.PRIORITY_RANK.items() if rank < lc.PRIORITY_RANK[options["priority_threshold"]]
    ]
    stmt = (
        select(func.min(PersistentJob.interrupted_at))
        .join(TaskRef, TaskRef.id == PersistentJob.base_task_id)
        .where(
            _accidents(),
            PersistentJob.interrupted_at >= since,
            PersistentJob.auto_resume_count < max_per_job,
            PersistentJob.progress_percentage >= options["min_progress_percentage"],
        )
    )
    if low:
        stmt = stmt.where(TaskRef.priority.not_in(low))
    if excluded:
        stmt = stmt.where(PersistentJob.id.not_in(sorted(excluded)))
    return session.scalar(stmt)


def _skip_reason(
    job: PersistentJob, threshold: int, since: Any, max_per_job: int, options: dict[str, Any]
) -> str | None:
    if lc.PRIORITY_RANK.get(job.base_task.priority, 1) < threshold:
        return f"priority below {options['priority_threshold']}"
    if job.progress_percentage < options["min_progress_percentage"]:
        return f"progress below {options['min_progress_percentage']}%"
    if job.interrupted_at is None or job.interrupted_at < since:
        return f"interrupted more than {options['max_interruption_hours']} h ago"
    if job.auto_resume_count >= max_per_job:
        return f"already auto-resumed {job.auto_resume_count} times"
    return None


def cleanup_old(uow: UnitOfWork, brand_id: int, options: dict[str, Any]) -> dict[str, Any]:
    """Delete finished jobs (completed, failed, cancelled) older than `days_old`, with their
    checkpoints and states, for real (or only count them with dry_run)."""
    cutoff = utcnow() - timedelta(days=options["days_old"])
    jobs = uow.session.scalars(
        select(PersistentJob)
        .where(
            PersistentJob.brand_id == brand_id,
            PersistentJob.status.in_(tuple(lc.FINISHED)),
            PersistentJob.finished_at <= cutoff,
        )
        .with_for_update(of=PersistentJob)
    ).all()
    preserved: Counter[str] = Counter()
    deleted_types: Counter[str] = Counter()
    deleted = checkpoints = freed = 0
    for job in jobs:
        if options["preserve_failed"] and job.status == lc.FAILED:
            preserved["failed"] += 1
            continue
        if options["preserve_with_checkpoints"] and job.checkpoints_count > 0:
            preserved["has_checkpoints"] += 1
            continue
        deleted += 1
        deleted_types[job.base_task.task_type or "unknown"] += 1
        sizes = uow.session.scalars(
            select(Checkpoint.stored_size_bytes).where(Checkpoint.job_id == job.id)
        ).all()
        checkpoints += len(sizes)
        freed += sum(sizes)
        if not options["dry_run"]:
            lc.delete_job(uow, job)
    return {
        "cleanup_summary": {
            "jobs_reviewed": len(jobs),
            "jobs_deleted": deleted,
            "jobs_preserved": sum(preserved.values()),
            "checkpoints_deleted": checkpoints,
            "storage_freed_mb": round(freed / MB, 4),
        },
        "preserved_reasons": dict(preserved),
        "deleted_job_types": dict(deleted_types),
        "dry_run": options["dry_run"],
    }


def validate_config(options: dict[str, Any]) -> dict[str, Any]:
    """Advice for a job's checkpointing plan: `checkpoint_frequency` is minutes between checkpoints,
    and each checkpoint is assumed about the size of `job_data`."""
    hours, every = options["estimated_duration_hours"], options["checkpoint_frequency"]
    size = len(codec.serialize(options["job_data"]))
    count = max(1, math.ceil(hours * 60 / every))
    warnings: list[str] = []
    recommendations: list[str] = []
    valid = True
    if hours > MAX_TIMEOUT_HOURS:
        valid = False
        warnings.append(f"The duration exceeds the longest task timeout ({MAX_TIMEOUT_HOURS:.0f} h).")
    if every > hours * 60:
        warnings.append("The job ends before its first checkpoint: an interruption loses all its work.")
    if every > 30:
        recommendations.append(
            f"Checkpoint at least every 30 minutes; with {every:g} an interruption may lose that much work."
        )
    if every < 0.5:
        warnings.append("Checkpoints more often than every 30 seconds cost more than they save.")
    if size > 100 * 1024:
        warnings.append(f"Checkpoints of about {size // 1024} KB are large; store references, not the data.")
    if count > 500:
        recommendations.append(
            "Run POST checkpoints/optimize-storage/ with max_checkpoints_per_job to keep storage bounded."
        )
    if not options["job_data"]:
        recommendations.append("job_data is empty: put in it what a resumed handler needs to continue.")
    return {
        "valid": valid,
        "recommendations": recommendations,
        "warnings": warnings,
        "estimated_checkpoints": count,
        "estimated_storage_mb": round(count * size / MB, 4),
    }
