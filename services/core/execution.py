"""How core follows execution: the events workers report (started, progress, completed, failed,
heartbeats), worker loss, and the dispatcher that sends due tasks to the work queues.

Ordering rule: an event about attempt N only applies while the task is on attempt N, and never
moves a task backwards (a late progress after completion, a result after a cancel, a started
after a newer dispatch all change nothing)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import select, update

from shared.events.envelope import Envelope, parse_iso, utcnow
from shared.unit_of_work import UnitOfWork

from .models import Task, WorkerPresence
from shared import task_states as st
from .tasks.service import announce_status, dispatch, transition

log = logging.getLogger(__name__)

TASKS_DEAD_LETTERED = Counter(
    "taskhub_tasks_dead_lettered_total", "Tasks parked after too many lost deliveries"
)


class ExecutionPolicy:
    """Leases and poison bounds (configurable; tests shorten them)."""

    def __init__(self, lease_seconds: float = 30.0, max_lost_deliveries: int = 3) -> None:
        self.lease = timedelta(seconds=lease_seconds)
        self.max_lost_deliveries = max_lost_deliveries


def _task_for(uow: UnitOfWork, env: Envelope) -> Task | None:
    task = uow.session.scalars(select(Task).where(Task.id == int(env.data["id"])).with_for_update()).first()
    if task is None or (env.brand_id is not None and task.brand_id != env.brand_id):
        return None
    return task


def _current_attempt(task: Task, env: Envelope) -> bool:
    return int(env.data.get("attempt", -1)) == task.attempt


def on_started(policy: ExecutionPolicy):  # type: ignore[no-untyped-def]
    def handle(uow: UnitOfWork, env: Envelope) -> None:
        task = _task_for(uow, env)
        if task is None:
            return
        worker = env.data.get("worker_name")
        if not _current_attempt(task, env) or task.status not in (st.PENDING, st.RETRYING):
            if not (task.status == st.RUNNING and _current_attempt(task, env) and task.worker_name == worker):
                # a stale or cancelled attempt started somewhere, or a second delivery of the
                # running attempt (its first ack was lost): tell that worker to stop it
                uow.emit(
                    "task.attempt_revoked",
                    task.brand_id,
                    {
                        "id": task.id,
                        "task_id": task.task_id,
                        "attempt": env.data.get("attempt"),
                        "worker_name": worker,
                    },
                )
            return
        now = utcnow()
        transition(task, st.RUNNING, f"started on {env.data.get('worker_name')}", now)
        task.started_at = parse_iso(env.data.get("started_at")) or now
        task.worker_name = env.data.get("worker_name")
        task.lease_expires_at = now + policy.lease

    return handle


def on_progress(policy: ExecutionPolicy):  # type: ignore[no-untyped-def]
    def handle(uow: UnitOfWork, env: Envelope) -> None:
        task = _task_for(uow, env)
        if task is None or not _current_attempt(task, env) or task.status != st.RUNNING:
            return
        progress = max(0, min(100, int(env.data.get("progress_percentage") or 0)))
        task.progress_percentage = max(task.progress_percentage, progress)
        if env.data.get("current_step") is not None:
            task.current_step = str(env.data["current_step"])[:200]
        now = utcnow()
        task.updated_at = now
        task.lease_expires_at = now + policy.lease

    return handle


def _settle_start(task: Task, env: Envelope) -> bool:
    """A result may overtake its own started event; bring the task to running first."""
    if not _current_attempt(task, env):
        return False
    if task.status in (st.PENDING, st.RETRYING):
        transition(task, st.RUNNING, "started (reported with its result)")
        task.worker_name = env.data.get("worker_name")
        task.started_at = task.started_at or utcnow()
    return task.status == st.RUNNING


def on_completed(uow: UnitOfWork, env: Envelope) -> None:
    task = _task_for(uow, env)
    if task is None or not _settle_start(task, env):
        return
    now = utcnow()
    transition(task, st.COMPLETED, "completed", now)
    task.progress_percentage = 100
    task.result_data = env.data.get("result_data") or {}
    task.completed_at = now
    task.lease_expires_at = None
    task.lost_deliveries = 0


def on_failed(uow: UnitOfWork, env: Envelope) -> None:
    task = _task_for(uow, env)
    if task is None or not _settle_start(task, env):
        return
    now = utcnow()
    task.error_message = str(env.data.get("error_message") or "failed")[:10000]
    task.error_traceback = env.data.get("traceback")
    task.lease_expires_at = None
    if env.data.get("will_retry") and task.retry_count < task.max_retries:
        raw_delay = env.data.get("retry_delay_seconds")
        delay = max(0.0, float(raw_delay)) if raw_delay is not None else 1.0
        transition(task, st.RETRYING, f"attempt {task.attempt} failed; retry in {delay:.1f}s", now)
        task.retry_count += 1
        task.dispatch_due_at = now + timedelta(seconds=delay)
        uow.emit(
            "task.retried",
            task.brand_id,
            {
                "id": task.id,
                "task_id": task.task_id,
                "retry_count": task.retry_count,
                "reason": "automatic",
                "delay_seconds": delay,
            },
        )
        return
    transition(task, st.FAILED, "failed", now)
    task.completed_at = now


def on_heartbeat(policy: ExecutionPolicy):  # type: ignore[no-untyped-def]
    def handle(uow: UnitOfWork, env: Envelope) -> None:
        data, now = env.data, utcnow()
        name = str(data.get("worker_name"))
        presence = uow.session.get(WorkerPresence, name) or WorkerPresence(worker_name=name)
        presence.queues = list(data.get("queues") or [])
        presence.task_types = list(data.get("task_types") or [])
        presence.active_task_ids = list(data.get("active_task_ids") or [])
        presence.last_seen = now
        uow.session.add(presence)
        if presence.active_task_ids:
            uow.session.execute(
                update(Task)
                .where(
                    Task.task_id.in_(presence.active_task_ids),
                    Task.status == st.RUNNING,
                    Task.worker_name == name,
                )
                .values(lease_expires_at=now + policy.lease)
            )
        revoke_what_should_not_run(uow, name, data.get("active_tasks") or [])

    return handle


def revoke_what_should_not_run(uow: UnitOfWork, worker: str, active: list[dict[str, Any]]) -> None:
    """A worker still running an attempt that core no longer wants (cancelled, paused, finished, or
    superseded by a newer attempt) missed its revocation (say, during a broker restart): repeat it."""
    attempts = {str(a.get("task_id")): int(a.get("attempt") or 0) for a in active if a.get("task_id")}
    if not attempts:
        return
    tasks = uow.session.scalars(select(Task).where(Task.task_id.in_(list(attempts)))).all()
    for task in tasks:
        attempt = attempts[task.task_id]
        superseded = attempt < task.attempt or (task.status == st.RUNNING and task.worker_name != worker)
        if superseded or task.status in (st.CANCELLED, st.PAUSED):
            uow.emit(
                "task.attempt_revoked",
                task.brand_id,
                {
                    "id": task.id,
                    "task_id": task.task_id,
                    "attempt": attempts[task.task_id],
                    "worker_name": worker,
                },
            )


def on_released(uow: UnitOfWork, env: Envelope) -> None:
    """A worker shutting down handed back an attempt it could not finish: run it again now."""
    task = _task_for(uow, env)
    if task is None or not _current_attempt(task, env) or task.status != st.RUNNING:
        return
    now = utcnow()
    transition(
        task,
        st.PENDING,
        f"handed back by {env.data.get('worker_name')} ({env.data.get('reason', 'shutdown')})",
        now,
    )
    task.worker_name = None
    task.lease_expires_at = None
    dispatch(uow, task, now)
    announce_status(uow, task)


def on_worker_offline(policy: ExecutionPolicy):  # type: ignore[no-untyped-def]
    def handle(uow: UnitOfWork, env: Envelope) -> None:
        name = env.data.get("worker_name")
        tasks = uow.session.scalars(
            select(Task).where(Task.worker_name == name, Task.status == st.RUNNING).with_for_update()
        ).all()
        for task in tasks:
            recover_lost(uow, task, policy, f"worker {name} went offline")

    return handle


def recover_lost(uow: UnitOfWork, task: Task, policy: ExecutionPolicy, reason: str) -> None:
    """Nobody runs this task any more: run it again, or park it after too many lost deliveries
    (a task that kills its worker every time must not loop)."""
    now = utcnow()
    # a worker that is only slow or cut off (not dead) must stop the attempt it may still run
    uow.emit(
        "task.attempt_revoked",
        task.brand_id,
        {"id": task.id, "task_id": task.task_id, "attempt": task.attempt, "worker_name": task.worker_name},
    )
    task.lost_deliveries += 1
    task.lease_expires_at = None
    if task.lost_deliveries >= policy.max_lost_deliveries:
        transition(
            task, st.FAILED, f"{reason}; dead-lettered after {task.lost_deliveries} lost deliveries", now
        )
        task.error_message = (
            f"Worker lost {task.lost_deliveries} times while running this task; dead-lettered."
        )
        task.completed_at = now
        uow.send_work("dead", f"{task.task_id}:{task.attempt}:dead", _dead_letter_body(task))
        uow.emit(
            "task.failed",
            task.brand_id,
            {
                "id": task.id,
                "task_id": task.task_id,
                "attempt": task.attempt,
                "error_message": task.error_message,
                "will_retry": False,
                "dead_lettered": True,
                "metrics": {},
            },
        )
        TASKS_DEAD_LETTERED.inc()
        return
    transition(task, st.PENDING, reason, now)
    task.worker_name = None
    dispatch(uow, task, now)
    announce_status(uow, task)


def _dead_letter_body(task: Task) -> bytes:
    import json

    return json.dumps(
        {
            "id": task.id,
            "task_id": task.task_id,
            "brand_id": task.brand_id,
            "task_type": task.task_type,
            "attempt": task.attempt,
        }
    ).encode()


def dispatch_due(uow: UnitOfWork, live_types: Iterable[str], limit: int = 500) -> int:
    """Send tasks whose time has come (scheduled_for, retry delays) to their work queues, once a
    live worker serves their type (until then they wait here, not in the broker)."""
    now = utcnow()
    tasks = uow.session.scalars(
        select(Task)
        .where(
            Task.dispatch_due_at <= now,
            Task.status.in_((st.PENDING, st.RETRYING)),
            Task.task_type.in_(list(live_types)),
        )
        .order_by(Task.dispatch_due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for task in tasks:
        dispatch(uow, task, now)
    return len(tasks)


def reap_expired_leases(uow: UnitOfWork, policy: ExecutionPolicy, limit: int = 200) -> int:
    tasks = uow.session.scalars(
        select(Task)
        .where(Task.lease_expires_at < utcnow(), Task.status == st.RUNNING)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for task in tasks:
        recover_lost(uow, task, policy, f"lease of worker {task.worker_name} expired")
    return len(tasks)


def execution_handlers(policy: ExecutionPolicy) -> dict[str, Any]:
    return {
        "task.started": on_started(policy),
        "task.progress": on_progress(policy),
        "task.completed": on_completed,
        "task.failed": on_failed,
        "task.released": on_released,
        "worker.heartbeat": on_heartbeat(policy),
        "worker.offline": on_worker_offline(policy),
    }
