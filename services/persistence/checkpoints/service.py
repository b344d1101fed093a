"""Checkpoint use cases: save (the handler's durable step), edit, delete, optimize storage.
Each runs in the caller's unit of work and writes its events to the outbox in it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.crud import get_owned
from shared.domain_errors import InvalidField
from shared.events import catalog
from shared.events.envelope import utcnow
from shared.unit_of_work import UnitOfWork

from ..jobs import lifecycle as lc
from ..jobs.runs import control_at_checkpoint, job_in_brand
from ..models import Checkpoint, PersistentJob
from . import codec

MB = 1024 * 1024


def get_checkpoint(session: Session, brand_id: int, pk: int, *, lock: bool = False) -> Checkpoint:
    return get_owned(session, Checkpoint, brand_id, pk, "Checkpoint", lock=lock)


def _store(checkpoint: Checkpoint, data: Any) -> None:
    raw = codec.serialize(data)
    checkpoint.payload = raw
    checkpoint.is_compressed = False
    checkpoint.data_size_bytes = checkpoint.stored_size_bytes = len(raw)
    checkpoint.checksum = codec.checksum(data)


def save_checkpoint(
    uow: UnitOfWork, brand_id: int, fields: dict[str, Any], only_task: int | None = None
) -> tuple[Checkpoint, str]:
    """Store a checkpoint, move the job forward, publish checkpoint.saved; returns the checkpoint and
    the control answer for the handler (continue, pause, cancel). `only_task`: a worker's attempt
    grant names one task, and only that task's job takes its checkpoints."""
    job = job_in_brand(uow, brand_id, fields["persistent_job"], "persistent_job")
    if only_task is not None and job.base_task_id != only_task:
        raise InvalidField("persistent_job", "Unknown persistent job.")
    now = utcnow()
    checkpoint = Checkpoint(
        brand_id=brand_id,
        job=job,
        step_name=fields["step_name"],
        is_recovery_point=fields.get("is_recovery_point", True),
        created_at=now,
        updated_at=now,
    )
    _store(checkpoint, fields["checkpoint_data"])
    uow.session.add(checkpoint)
    job.last_checkpoint_at = now
    job.checkpoints_count += 1
    job.current_step = fields["step_name"]
    for key in ("completed_steps", "total_steps"):
        if fields.get(key) is not None:
            setattr(job, key, fields[key])
    if fields.get("progress_percentage") is not None:
        job.progress_percentage = float(fields["progress_percentage"])
    elif job.total_steps:
        job.progress_percentage = round(
            100.0 * min(job.completed_steps, job.total_steps) / job.total_steps, 2
        )
    # a newer checkpoint supersedes the one the last resume chose
    job.resume_checkpoint_id = None
    job.updated_at = now
    uow.session.flush()
    lc.settle(uow, job, announce=False)
    uow.publish(
        catalog.CheckpointSaved(
            job_id=job.id,
            base_task=job.base_task_id,
            task_id=job.base_task.task_id,
            checkpoint_id=checkpoint.id,
            step_name=checkpoint.step_name,
            is_recovery_point=checkpoint.is_recovery_point,
            can_resume=job.can_resume,
        ),
        brand_id,
    )
    return checkpoint, control_at_checkpoint(uow, job, checkpoint)


def update_checkpoint(uow: UnitOfWork, brand_id: int, pk: int, fields: dict[str, Any]) -> Checkpoint:
    checkpoint = get_checkpoint(uow.session, brand_id, pk, lock=True)
    if "checkpoint_data" in fields:
        _store(checkpoint, fields["checkpoint_data"])
    for key in ("step_name", "is_recovery_point"):
        if key in fields:
            setattr(checkpoint, key, fields[key])
    checkpoint.updated_at = utcnow()
    uow.session.flush()
    lc.settle(uow, checkpoint.job)
    return checkpoint


def delete_checkpoint(uow: UnitOfWork, brand_id: int, pk: int) -> None:
    checkpoint = get_checkpoint(uow.session, brand_id, pk, lock=True)
    job = checkpoint.job
    uow.session.delete(checkpoint)
    job.checkpoints_count = max(0, job.checkpoints_count - 1)
    if job.resume_checkpoint_id == checkpoint.id:
        job.resume_checkpoint_id = None
    job.updated_at = utcnow()
    uow.session.flush()
    lc.settle(uow, job)


def optimize_storage(uow: UnitOfWork, brand_id: int, options: dict[str, Any]) -> dict[str, Any]:
    """Compress the data of checkpoints older than the threshold (zlib; kept only where it saves
    bytes) and prune each job beyond `max_checkpoints_per_job`, never touching a job's newest
    recovery point or the checkpoint a pending resume will start from."""
    now = utcnow()
    compressed = pruned = processed = 0
    saved = 0
    if options["compress_old_checkpoints"]:
        cutoff = now - timedelta(days=options["days_old_threshold"])
        old = uow.session.scalars(
            select(Checkpoint)
            .where(
                Checkpoint.brand_id == brand_id,
                Checkpoint.is_compressed.is_(False),
                Checkpoint.created_at <= cutoff,
            )
            .with_for_update(of=Checkpoint)
        ).all()
        for checkpoint in old:
            processed += 1
            packed = codec.compress(checkpoint.payload)
            if len(packed) < len(checkpoint.payload):
                saved += len(checkpoint.payload) - len(packed)
                checkpoint.payload, checkpoint.is_compressed = packed, True
                checkpoint.stored_size_bytes = len(packed)
                checkpoint.updated_at = now
                compressed += 1
    limit = options.get("max_checkpoints_per_job")
    if limit is not None:
        jobs = uow.session.scalars(
            select(PersistentJob)
            .where(PersistentJob.brand_id == brand_id, PersistentJob.checkpoints_count > limit)
            .with_for_update(of=PersistentJob)
        ).all()
        for job in jobs:
            removed, freed = _prune(uow, job, limit)
            pruned += removed
            saved += freed
            processed += removed
    return {
        "optimization_results": {
            "checkpoints_compressed": compressed,
            "storage_saved_mb": round(saved / MB, 4),
            "old_checkpoints_archived": pruned,
            "total_checkpoints_processed": processed,
        }
    }


def _prune(uow: UnitOfWork, job: PersistentJob, limit: int) -> tuple[int, int]:
    newest_first = uow.session.scalars(
        select(Checkpoint)
        .where(Checkpoint.job_id == job.id)
        .order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc())
    ).all()
    newest_recovery = lc.newest_recovery_point(uow, job)
    keep = {c.id for c in newest_first[:limit]}
    keep.update(i for i in (newest_recovery.id if newest_recovery else None, job.resume_checkpoint_id) if i)
    removed = freed = 0
    for checkpoint in newest_first:
        if checkpoint.id not in keep:
            freed += checkpoint.stored_size_bytes
            uow.session.delete(checkpoint)
            removed += 1
    job.checkpoints_count = len(newest_first) - removed
    job.updated_at = utcnow()
    uow.session.flush()
    lc.settle(uow, job)
    return removed, freed
