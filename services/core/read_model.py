"""What core shows from the other services, kept current from their events: metrics
(monitoring), resumability and pause/resume (persistence), periodic runs (scheduling)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from shared import task_states as st
from shared.domain_errors import DomainError
from shared.events.catalog import TaskDeleted
from shared.events.envelope import Envelope, parse_iso, utcnow
from shared.unit_of_work import UnitOfWork

from .models import Task
from .task_types import TaskTypeRegistry
from .tasks.service import (
    Creator,
    NewTask,
    announce_status,
    create_task,
    dispatch,
    drop_lease,
    task_headers,
    transition,
)

log = logging.getLogger(__name__)

METRIC_SUMMARY = ("execution_time_ms", "memory_usage_mb", "cost_usd")


def _task(uow: UnitOfWork, env: Envelope, key: str = "base_task") -> Task | None:
    raw = env.data.get(key, env.data.get("id"))
    if raw is None:
        return None
    task = uow.session.scalars(select(Task).where(Task.id == int(raw)).with_for_update()).first()
    if task is None or (env.brand_id is not None and task.brand_id != env.brand_id):
        return None
    return task


def on_metrics_recorded(uow: UnitOfWork, env: Envelope) -> None:
    task = _task(uow, env)
    if task is None:
        return
    task.has_metrics = True
    task.metrics = {k: env.data.get(k) for k in METRIC_SUMMARY}
    task.execution_time_ms = env.data.get("execution_time_ms")


def on_metrics_deleted(uow: UnitOfWork, env: Envelope) -> None:
    task = _task(uow, env)
    if task is not None:
        task.has_metrics, task.metrics, task.execution_time_ms = False, None, None


def on_resumability(uow: UnitOfWork, env: Envelope) -> None:
    """checkpoint.saved and job.* carry the job's `can_resume`; a task with a job is persistent
    from then on (its events carry the header persistence binds to)."""
    task = _task(uow, env)
    if task is None:
        if env.event_type == "job.created":
            _gone_before_its_job(uow, env)
        return
    if "can_resume" in env.data:
        task.is_resumable = bool(env.data["can_resume"])
    if env.event_type.startswith("job.") and not task.is_persistent:
        task.is_persistent = True
        _state_for_persistence(uow, task)


def _state_for_persistence(uow: UnitOfWork, task: Task) -> None:
    """persistence made the job's row before this, and the task's events since carried no header:
    it missed them (say the task completed meanwhile). The first event with the header states
    where the task is now; core's events of a task are relayed in order, so nothing is lost."""
    if task.status == st.FAILED and task.error_message:
        reason = task.error_message
    else:
        reason = task.history[0].reason if task.history else "created"
    announce_status(uow, task, reason, priority=task.priority)


def _gone_before_its_job(uow: UnitOfWork, env: Envelope) -> None:
    """The task was deleted before core heard of its job: its task.deleted carried no header, so
    persistence is told again, with it, and drops the job. (persistence makes a job only for a
    task core vouched for, to that brand: its worker's grant or core's answer to the caller.)"""
    pk = int(env.data["base_task"])
    if env.brand_id is None or uow.session.get(Task, pk) is not None:
        return  # another brand's task: not a word about it
    deleted = TaskDeleted(id=pk, task_id=str(env.data.get("task_id", "")))
    uow.publish(deleted, env.brand_id, task_headers(is_periodic=False, is_persistent=True))


def on_job_paused(uow: UnitOfWork, env: Envelope) -> None:
    task = _task(uow, env)
    if task is None:
        return
    on_resumability(uow, env)
    if task.status in (st.RUNNING, st.PENDING):
        transition(task, st.PAUSED, "paused by its owner")
        drop_lease(uow, task)
        task.dispatch_due_at = None
        announce_status(uow, task, "paused by its owner")


def on_job_resumed(uow: UnitOfWork, env: Envelope) -> None:
    """job.resumed / job.restarted: run the task again; its handler gets the checkpoint."""
    task = _task(uow, env)
    if task is None:
        return
    on_resumability(uow, env)
    if task.status == st.RUNNING or not st.can_move(task.status, st.PENDING):
        return
    now = utcnow()
    transition(task, st.PENDING, env.event_type.replace("job.", "job "), now)
    task.completed_at = None
    task.lost_deliveries = 0
    task.worker_name = None
    changed = {}
    if env.data.get("priority") in st.PRIORITY_RANK:
        task.priority = changed["priority"] = env.data["priority"]
        task.priority_rank = st.PRIORITY_RANK[task.priority]
    resume = {k: env.data.get(k) for k in ("job_id", "checkpoint_id", "from_step", "restart")}
    dispatch(uow, task, now, resume=resume)
    announce_status(uow, task, env.event_type.replace("job.", "job "), **changed)


def on_schedule_fired(registry: TaskTypeRegistry) -> Callable[[UnitOfWork, Envelope], None]:
    """A schedule's slot came: create its task once (the slot's idempotency key)."""

    def handle(uow: UnitOfWork, env: Envelope) -> None:
        request: dict[str, Any] | None = env.data.get("create_task")
        if not request or env.brand_id is None:
            return
        creator = Creator(
            brand_id=env.brand_id,
            brand_name=str(request.get("brand_name", "")),
            user_id=str(request.get("created_by_id", "scheduler")),
            username=str(request.get("created_by_username", "scheduler")),
        )
        fields = {
            k: request.get(k)
            for k in (
                "task_type",
                "priority",
                "description",
                "context_data",
                "max_retries",
                "timeout_minutes",
            )
            if request.get(k) is not None
        }
        # a slot fired ahead of its time (scheduling's lookahead) waits for it here; one whose
        # time has passed by now runs at once
        scheduled_for = parse_iso(request.get("scheduled_for"))
        if scheduled_for is not None and scheduled_for > utcnow():
            fields["scheduled_for"] = scheduled_for
        new = NewTask(
            fields,
            idempotency_key=env.data.get("idempotency_key"),
            periodic_task_id=env.data.get("periodic_task_id") or env.data.get("cron_job_id") or 0,
            origin={
                k: env.data.get(k)
                for k in ("periodic_task_id", "cron_job_id", "planned_time", "idempotency_key")
            },
        )
        try:
            create_task(uow, creator, new, registry)
        except DomainError as error:
            # a slot whose template no longer validates (say, scheduled_for in the past): the
            # schedule's run shows nothing was created; never a poison event
            log.warning(
                "schedule.fired %s created no task: %s", env.data.get("idempotency_key"), error.detail
            )

    return handle


def read_model_handlers(registry: TaskTypeRegistry) -> dict[str, Any]:
    return {
        "metrics.recorded": on_metrics_recorded,
        "metrics.deleted": on_metrics_deleted,
        "checkpoint.saved": on_resumability,
        "job.created": on_resumability,
        "job.updated": on_resumability,
        "job.paused": on_job_paused,
        "job.resumed": on_job_resumed,
        "job.restarted": on_job_resumed,
        "schedule.fired": on_schedule_fired(registry),
    }
