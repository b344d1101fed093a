"""Read side of jobs: the list with the filters and orderings of §3, the resumable view and the
stats, all scoped to the caller's brand first (every index starts with brand_id)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from shared.events.envelope import iso, utcnow
from shared.listing import (
    Listing,
    column_filters,
    ordering_columns,
    search_clause,
    timestamp_filters,
)

from ..checkpoints import codec
from ..models import Checkpoint, PersistentJob, TaskRef
from . import lifecycle as lc
from .schemas import JobListArgs

# `search` is job_list's own: it also looks in the task the job belongs to
JOBS = Listing(
    filters={
        **column_filters(JobListArgs, PersistentJob),
        "base_task": lambda v: PersistentJob.base_task_id.in_(v),
        "progress_gte": lambda v: PersistentJob.progress_percentage >= v,
        "progress_lte": lambda v: PersistentJob.progress_percentage <= v,
        "has_checkpoints": lambda v: (
            PersistentJob.checkpoints_count > 0 if v else PersistentJob.checkpoints_count == 0
        ),
        **timestamp_filters(PersistentJob.created_at, PersistentJob.updated_at),
    },
    ordering=ordering_columns(JobListArgs, PersistentJob),
    tiebreak=PersistentJob.id,
    ranges={"progress_percentage": PersistentJob.progress_percentage},
)
RECENT_CHECKPOINT = timedelta(hours=1)


def job_list(brand_id: int, args: dict[str, Any]) -> Select[Any]:
    stmt = JOBS.select(select(PersistentJob).where(PersistentJob.brand_id == brand_id), args)
    if args.get("search"):
        matching = select(TaskRef.id).where(
            TaskRef.brand_id == brand_id, search_clause(args["search"], TaskRef.task_id, TaskRef.task_type)
        )
        stmt = stmt.where(
            PersistentJob.base_task_id.in_(matching)
            | search_clause(args["search"], PersistentJob.current_step)
        )
    return stmt


def newest_checkpoints(session: Session, job: PersistentJob, limit: int = 5) -> list[Checkpoint]:
    return list(
        session.scalars(
            select(Checkpoint)
            .where(Checkpoint.job_id == job.id)
            .order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc())
            .limit(limit)
        )
    )


def resumable(session: Session, brand_id: int, args: dict[str, Any], limit: int = 100) -> dict[str, Any]:
    now = utcnow()
    stmt = (
        select(PersistentJob)
        .join(TaskRef, TaskRef.id == PersistentJob.base_task_id)
        .where(
            PersistentJob.brand_id == brand_id,
            lc.stopped_clause(),
            PersistentJob.can_resume.is_(True),
        )
    )
    if args.get("priority"):
        stmt = stmt.where(TaskRef.priority.in_(args["priority"]))
    if args.get("interrupted_before"):
        stmt = stmt.where(PersistentJob.interrupted_at <= args["interrupted_before"])
    if args.get("progress_gte") is not None:
        stmt = stmt.where(PersistentJob.progress_percentage >= args["progress_gte"])
    if args.get("has_recent_checkpoint") is not None:
        recent = PersistentJob.last_checkpoint_at >= now - RECENT_CHECKPOINT
        stmt = stmt.where(recent if args["has_recent_checkpoint"] else ~recent)
    rank = case(*((TaskRef.priority == p, r) for p, r in lc.PRIORITY_RANK.items()), else_=1)
    jobs = session.scalars(
        stmt.order_by(rank.desc(), PersistentJob.progress_percentage.desc(), PersistentJob.id).limit(limit)
    ).all()
    entries = [_resumable_entry(session, job, now) for job in jobs]
    return {"resumable_jobs": len(entries), "jobs": entries, "recommendations": _recommendations(entries)}


def _resumable_entry(session: Session, job: PersistentJob, now: Any) -> dict[str, Any]:
    checkpoint = session.scalars(lc.recovery_points(job).limit(1)).first()
    last = None
    if checkpoint is not None:
        try:
            data = codec.verified(checkpoint.payload, checkpoint.is_compressed, checkpoint.checksum)
        except codec.CorruptedCheckpoint:
            data = None
        last = {
            "id": checkpoint.id,
            "step_name": checkpoint.step_name,
            "created_at": iso(checkpoint.created_at),
            "checkpoint_data": data,
            "is_valid": data is not None,
        }
    return {
        "id": job.id,
        "base_task": base_task_view(job.base_task),
        "status": job.status,
        "progress_percentage": job.progress_percentage,
        "last_checkpoint": last,
        "interruption_reason": job.interruption_reason,
        "interrupted_at": iso(job.interrupted_at),
        "estimated_resume_time_minutes": _remaining_minutes(job),
        "priority": job.base_task.priority,
    }


def _remaining_minutes(job: PersistentJob) -> float | None:
    """The work left at the pace of the work done (first start to the newest checkpoint)."""
    if not job.started_at or not job.last_checkpoint_at or not 0 < job.progress_percentage < 100:
        return None
    worked = (job.last_checkpoint_at - job.started_at).total_seconds() / 60
    return round(worked * (100 - job.progress_percentage) / job.progress_percentage, 2)


def _recommendations(entries: list[dict[str, Any]]) -> list[str]:
    out = []
    if entries:
        out.append(
            f"{len(entries)} job(s) can continue from a checkpoint: POST auto-resume/ resumes the best."
        )
    corrupted = [e["id"] for e in entries if e["last_checkpoint"] and not e["last_checkpoint"]["is_valid"]]
    if corrupted:
        out.append(
            f"Jobs {corrupted} have a corrupted newest checkpoint: resume from an older one or restart."
        )
    stale = [e["id"] for e in entries if e["status"] == lc.PAUSED]
    if stale:
        out.append(f"Jobs {stale} are paused on purpose; auto-resume leaves them alone.")
    return out


def base_task_view(ref: TaskRef) -> dict[str, Any]:
    return {
        "id": ref.id,
        "task_id": ref.task_id,
        "task_type": ref.task_type,
        "status": ref.status,
        "priority": ref.priority,
    }


def stats(session: Session, brand_id: int, days: int, include_trends: bool) -> dict[str, Any]:
    end = utcnow()
    start = end - timedelta(days=days)
    in_period = (PersistentJob.brand_id == brand_id, PersistentJob.created_at >= start)
    by_status = dict(
        session.execute(
            select(PersistentJob.status, func.count()).where(*in_period).group_by(PersistentJob.status)
        ).all()
    )
    row = session.execute(
        select(
            func.count(),
            func.avg(PersistentJob.progress_percentage),
            func.sum(case((PersistentJob.can_resume.is_(True), 1), else_=0)),
            func.sum(PersistentJob.resume_count),
            func.sum(PersistentJob.auto_resume_count),
            func.sum(PersistentJob.restart_count),
            func.sum(PersistentJob.interruptions_count),
            func.sum(case((PersistentJob.resume_count > 0, 1), else_=0)),
            func.sum(
                case(((PersistentJob.resume_count > 0) & (PersistentJob.status == lc.COMPLETED), 1), else_=0)
            ),
        ).where(*in_period)
    ).one()
    (
        total,
        avg_progress,
        resumable_now,
        resumes,
        autos,
        restarts,
        interruptions,
        resumed_jobs,
        resumed_done,
    ) = row
    checkpoint_row = session.execute(
        select(
            func.count(),
            func.sum(case((Checkpoint.is_recovery_point.is_(True), 1), else_=0)),
            func.sum(case((Checkpoint.is_compressed.is_(True), 1), else_=0)),
            func.sum(Checkpoint.data_size_bytes),
            func.sum(Checkpoint.stored_size_bytes),
            func.sum(case((Checkpoint.data_size_bytes > 100 * 1024, 1), else_=0)),
        ).where(Checkpoint.brand_id == brand_id, Checkpoint.created_at >= start)
    ).one()
    count, recovery, compressed, data_bytes, stored_bytes, large = (int(v or 0) for v in checkpoint_row)
    reasons = session.execute(
        select(PersistentJob.interruption_reason, func.count())
        .where(*in_period, PersistentJob.status.in_((lc.FAILED, lc.INTERRUPTED, lc.CANCELLED)))
        .group_by(PersistentJob.interruption_reason)
        .order_by(func.count().desc())
        .limit(5)
    ).all()
    result: dict[str, Any] = {
        "period": {"days": days, "start": iso(start), "end": iso(end)},
        "totals": {
            "jobs": int(total or 0),
            "by_status": {s: int(by_status.get(s, 0)) for s in lc.STATUSES},
            "resumable": int(resumable_now or 0),
            "avg_progress_percentage": round(float(avg_progress or 0), 2),
        },
        "resume_stats": {
            "resumes": int(resumes or 0),
            "automatic_resumes": int(autos or 0),
            "restarts": int(restarts or 0),
            "jobs_resumed": int(resumed_jobs or 0),
            "resumed_then_completed": int(resumed_done or 0),
            "resume_success_rate": round(100.0 * int(resumed_done or 0) / int(resumed_jobs), 2)
            if resumed_jobs
            else None,
        },
        "checkpoint_stats": {
            "total": count,
            "recovery_points": recovery,
            "compressed": compressed,
            "large": large,
            "data_size_mb": round(data_bytes / (1024 * 1024), 4),
            "stored_size_mb": round(stored_bytes / (1024 * 1024), 4),
            "avg_size_kb": round(data_bytes / count / 1024, 3) if count else 0.0,
            "avg_per_job": round(count / int(total), 2) if total else 0.0,
        },
        "failure_analysis": {
            "failed": int(by_status.get(lc.FAILED, 0)),
            "interrupted": int(by_status.get(lc.INTERRUPTED, 0)),
            "cancelled": int(by_status.get(lc.CANCELLED, 0)),
            "interruptions": int(interruptions or 0),
            "failure_rate": round(100.0 * int(by_status.get(lc.FAILED, 0)) / int(total), 2)
            if total
            else None,
            "top_reasons": [{"reason": r or "unknown", "jobs": int(n)} for r, n in reasons],
        },
    }
    if include_trends:
        result["trends"] = _trends(session, brand_id, start, days)
    return result


def _trends(session: Session, brand_id: int, start: Any, days: int) -> list[dict[str, Any]]:
    """Jobs created, completed and failed per day (grouped in Python: portable and bounded)."""
    rows = session.execute(
        select(PersistentJob.created_at, PersistentJob.finished_at, PersistentJob.status).where(
            PersistentJob.brand_id == brand_id, PersistentJob.created_at >= start
        )
    ).all()
    buckets = {(start + timedelta(days=i + 1)).date().isoformat(): [0, 0, 0] for i in range(days)}
    for created, finished, status in rows:
        day = created.date().isoformat()
        if day in buckets:
            buckets[day][0] += 1
        if finished is not None and finished.date().isoformat() in buckets:
            index = 1 if status == lc.COMPLETED else 2 if status == lc.FAILED else None
            if index:
                buckets[finished.date().isoformat()][index] += 1
    return [{"date": d, "created": c, "completed": ok, "failed": f} for d, (c, ok, f) in buckets.items()]
