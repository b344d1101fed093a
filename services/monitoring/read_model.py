"""What monitoring knows of core's tasks, kept current from core's and the workers' task.* events
(never a call to core). It gives metrics records their `base_task` summary and their brand check.

Never backwards: an event of an older attempt changes nothing, and a final status (completed,
failed, cancelled) sticks until a task.retried brings the task back. Worker events may overtake
core's task.created; the row is then created from what the event says and completed later."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from shared.events.envelope import Envelope, parse_iso, utcnow
from shared.unit_of_work import UnitOfWork

from .metrics import rollup
from .models import MetricsRecord, TaskView

DELETED = "deleted"  # a tombstone: nothing about the task applies any more
FINAL = frozenset({"completed", "failed", "cancelled", DELETED})


def task_view(uow: UnitOfWork, env: Envelope, *, create: bool = True) -> TaskView | None:
    """The event's task, locked; None when the event names another brand's task (forged or
    misrouted) or, with create=False, an unknown one."""
    raw = env.data.get("id")
    if raw is None or env.brand_id is None:
        return None
    view = uow.session.scalars(select(TaskView).where(TaskView.id == int(raw)).with_for_update()).first()
    if view is not None:
        return view if view.brand_id == env.brand_id else None
    if not create:
        return None
    view = TaskView(
        id=int(raw),
        task_id=str(env.data.get("task_id") or ""),
        brand_id=env.brand_id,
        status="pending",
        attempt=0,
        retry_count=0,
        max_retries=3,
        updated_at=utcnow(),
    )
    uow.session.add(view)
    return view


def _copy_to_metrics(uow: UnitOfWork, view: TaskView) -> None:
    """Metrics records carry their task's type and priority (analytics group by them)."""
    record = uow.session.scalars(
        select(MetricsRecord).where(MetricsRecord.base_task == view.id).with_for_update()
    ).first()
    if record is None or (record.task_type, record.priority) == (view.task_type, view.priority):
        return
    rollup.remove(uow.session, record)  # its sums move to the day's row of its real type
    record.task_type, record.priority, record.task_id = view.task_type, view.priority, view.task_id
    uow.session.flush()
    rollup.add(uow.session, record)


def on_created(uow: UnitOfWork, env: Envelope) -> None:
    view = task_view(uow, env)
    if view is None:
        return
    data = env.data
    view.task_id = str(data.get("task_id") or view.task_id)
    view.task_type = str(data.get("task_type") or "")
    view.priority = str(data.get("priority") or "normal")
    view.queue_name = str(data.get("queue_name") or view.priority)
    view.max_retries = int(data.get("max_retries") or 0)
    view.created_at = parse_iso(data.get("created_at")) or utcnow()
    if view.attempt == 0 and view.status not in FINAL:
        view.status = str(data.get("status") or "pending")
    view.updated_at = utcnow()
    uow.session.flush()
    _copy_to_metrics(uow, view)


def on_updated(uow: UnitOfWork, env: Envelope) -> None:
    view = task_view(uow, env, create=False)
    if view is None:
        return
    changed: dict[str, Any] = env.data.get("changed") or {}
    if "priority" in changed:
        view.priority = str(changed["priority"])
    if "max_retries" in changed:
        view.max_retries = int(changed["max_retries"])
    if "status" in changed and int(changed.get("attempt") or 0) >= view.attempt:
        # core re-ran the task (worker lost, job resumed) or paused it
        view.status = str(changed["status"])
        view.attempt = int(changed.get("attempt") or view.attempt)
        if view.status not in ("completed", "failed", "cancelled"):
            view.completed_at = None
    view.updated_at = utcnow()
    _copy_to_metrics(uow, view)


def _attempt(env: Envelope) -> int:
    return int(env.data.get("attempt") or 0)


def on_started(uow: UnitOfWork, env: Envelope) -> None:
    view = task_view(uow, env)
    if view is None or _attempt(env) < view.attempt or view.status in FINAL:
        return
    if _attempt(env) == view.attempt and view.status != "pending" and view.status != "retrying":
        return  # this attempt already moved on (a late started after its result)
    view.attempt = _attempt(env)
    view.status = "running"
    view.worker_name = env.data.get("worker_name")
    view.started_at = parse_iso(env.data.get("started_at")) or utcnow()
    view.updated_at = utcnow()


def on_finished(uow: UnitOfWork, env: Envelope) -> TaskView | None:
    """task.completed / task.failed: the attempt's outcome (returns the view for the metrics)."""
    view = task_view(uow, env)
    if view is None or view.status == DELETED:
        return None
    if _attempt(env) < view.attempt or view.status in FINAL:
        return view  # the metrics still count: the attempt ran and used resources
    view.attempt = _attempt(env)
    view.worker_name = env.data.get("worker_name") or view.worker_name
    if env.event_type == "task.completed":
        view.status = "completed"
    elif env.data.get("will_retry") and view.retry_count < view.max_retries:
        view.status = "retrying"  # as core decides it; core's task.retried follows
    else:
        view.status = "failed"
    if view.status in FINAL:
        view.completed_at = utcnow()
    view.updated_at = utcnow()
    return view


def on_cancelled(uow: UnitOfWork, env: Envelope) -> None:
    view = task_view(uow, env, create=False)
    if view is not None and view.status not in FINAL:
        view.status = "cancelled"
        view.completed_at = view.updated_at = utcnow()


def on_retried(uow: UnitOfWork, env: Envelope) -> None:
    view = task_view(uow, env, create=False)
    if view is None:
        return
    view.retry_count = max(view.retry_count, int(env.data.get("retry_count") or 0))
    if view.status in ("failed", "cancelled"):
        view.status = "pending" if env.data.get("reason") == "manual" else "retrying"
        view.completed_at = None
    view.updated_at = utcnow()


def forget(uow: UnitOfWork, env: Envelope) -> TaskView | None:
    """task.deleted: the view stays as a tombstone, so that a worker's report arriving after the
    deletion cannot bring the task's metrics back (the caller drops the metrics record)."""
    view = task_view(uow, env)
    if view is not None:
        view.status, view.updated_at = DELETED, utcnow()
    return view
