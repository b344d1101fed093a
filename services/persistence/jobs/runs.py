"""The worker's side of a job, over HTTP with a machine token (the contract in
docs/persistence.md): `start_run` when a handler starts (get-or-create the job, say what to do
and which checkpoint to continue from), and `control_at_checkpoint`, the answer a handler gets
each time it saves a checkpoint. A pause or cancel reaches the handler through these answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from shared import task_states as ts
from shared.domain_errors import InvalidField
from shared.events import catalog
from shared.events.envelope import utcnow
from shared.unit_of_work import UnitOfWork

from ..checkpoints import codec
from ..models import Checkpoint, PersistentJob, TaskRef
from . import lifecycle as lc

RUN, PAUSE, CANCEL, CONTINUE = "run", "pause", "cancel", "continue"


def start_run(uow_factory: Callable[[], UnitOfWork], brand_id: int, body: dict[str, Any]) -> dict[str, Any]:
    """Idempotent per attempt; a race with task.created (or a second worker call) on the same
    rows is retried once, when the other side's rows are found instead of created."""
    with uow_factory() as uow:
        answer = lc.insert_race_safe(uow, lambda u: _start_run(u, brand_id, body))
        uow.commit()
        return answer


def _task_ref(uow: UnitOfWork, brand_id: int, body: dict[str, Any]) -> TaskRef:
    ref = uow.session.scalars(
        select(TaskRef).where(TaskRef.id == body["base_task"]).with_for_update()
    ).first()
    if ref is not None and ref.brand_id != brand_id:
        raise InvalidField("base_task", "Unknown task.")
    if ref is None:
        # the worker started before task.created reached this service, or the task's type was not
        # known to be persistent when core created it (its events reach this service once core
        # hears of the job, starting with one that states the task's current status)
        ref = lc.add_task_ref(
            uow, body["base_task"], brand_id, body["task_id"], body["task_type"], priority=body["priority"]
        )
    return ref


def _start_run(uow: UnitOfWork, brand_id: int, body: dict[str, Any]) -> dict[str, Any]:
    ref = _task_ref(uow, brand_id, body)
    job = lc.get_or_create(uow, ref)
    attempt, resume = body["attempt"], body.get("resume")
    if attempt < max(job.attempt, ref.attempt):
        return _answer(job, CANCEL)  # a stale attempt: a newer one exists
    if _cancelled(ref, attempt) or job.status in (lc.CANCELLED, lc.COMPLETED):
        return _answer(job, CANCEL)  # nothing left to run (a late or repeated delivery)
    if job.pause_requested_at is not None or job.status == lc.PAUSED:
        _pause(uow, job, checkpoint=None)
        return _answer(job, PAUSE)
    checkpoint = _resume_point(uow, job, resume)
    data = None
    if checkpoint is not None:
        try:
            data = codec.verified(checkpoint.payload, checkpoint.is_compressed, checkpoint.checksum)
        except codec.CorruptedCheckpoint:
            raise codec.corrupted_error(checkpoint.id) from None
    lc.begin_attempt(job, attempt, body["delivery"])
    lc.settle(uow, job, lc.RUNNING)
    return _answer(
        job,
        RUN,
        None
        if checkpoint is None
        else {"checkpoint_id": checkpoint.id, "step_name": checkpoint.step_name, "checkpoint_data": data},
    )


def _cancelled(ref: TaskRef, attempt: int) -> bool:
    """Core cancelled the task at this attempt or a later one. A newer attempt runs because core
    ran the task again after the cancel (a resumed or restarted job), which this service may
    not have heard of yet."""
    return ref.status == ts.CANCELLED and attempt <= ref.attempt


def _resume_point(uow: UnitOfWork, job: PersistentJob, resume: dict[str, Any] | None) -> Checkpoint | None:
    """The checkpoint chosen by the last resume or restart, else this run's newest recovery
    point (a re-run after a lost worker or a retry continues where the job was)."""
    chosen = (resume or {}).get("checkpoint_id") or job.resume_checkpoint_id
    if resume and resume.get("restart"):
        chosen = resume.get("checkpoint_id")
        if chosen is None:
            return None
    if chosen is not None:
        checkpoint = uow.session.get(Checkpoint, int(chosen))
        if checkpoint is not None and checkpoint.job_id == job.id:
            return checkpoint
    return lc.newest_recovery_point(uow, job)


def _answer(job: PersistentJob, control: str, resume_from: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"job_id": job.id, "status": job.status, "control": control, "resume_from": resume_from}


def _pause(uow: UnitOfWork, job: PersistentJob, checkpoint: Checkpoint | None) -> None:
    """The handler stops here: the job is paused, and core pauses its task on job.paused."""
    if job.status == lc.PAUSED:
        return
    job.pause_requested_at = None
    job.paused_at = utcnow()
    lc.settle(uow, job, lc.PAUSED, announce=False)
    newest = checkpoint or lc.newest_recovery_point(uow, job)
    lc.emit(uow, catalog.JobPaused, job, checkpoint_id=newest.id if newest else None)


def control_at_checkpoint(uow: UnitOfWork, job: PersistentJob, checkpoint: Checkpoint) -> str:
    if _cancelled(job.base_task, job.attempt) or job.status == lc.CANCELLED:
        return CANCEL
    if job.status == lc.PAUSED or job.pause_requested_at is not None:
        _pause(uow, job, checkpoint)
        return PAUSE
    return CONTINUE


def job_in_brand(uow: UnitOfWork, brand_id: int, job_id: int, field: str) -> PersistentJob:
    job = uow.session.scalars(
        select(PersistentJob)
        .where(PersistentJob.id == job_id, PersistentJob.brand_id == brand_id)
        .with_for_update(of=PersistentJob)
    ).first()
    if job is None:
        raise InvalidField(field, "Unknown persistent job.")
    return job
