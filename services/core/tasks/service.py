"""core's use cases. Each owns its transaction (a unit of work) and writes its events and work
messages to the outbox in that transaction. Free of Flask: HTTP and events both call in here."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import object_session, selectinload

from shared.auth import Principal
from shared.errors import conflict, field_error, not_found
from shared.events.envelope import iso, utcnow
from shared.unit_of_work import UnitOfWork

from .. import attempt_credentials
from ..models import StatusChange, Task
from ..task_types import TaskTypeRegistry
from . import status as st
from .schemas import TaskSchema

IDEMPOTENCY_TTL = timedelta(hours=24)
_task_schema = TaskSchema()


def task_view(task: Task) -> dict[str, Any]:
    """The task as the API shows it (also the data of task.created)."""
    return _task_schema.dump(task)


@dataclass(frozen=True)
class Creator:
    brand_id: int
    brand_name: str
    user_id: str
    username: str

    @classmethod
    def of(cls, principal: Principal) -> Creator:
        return cls(principal.brand_id, principal.brand_name, principal.user_id, principal.username)


def new_task_id() -> str:
    return "task_" + secrets.token_hex(6)


def transition(task: Task, target: str, reason: str, now: datetime | None = None) -> None:
    """The only place a task's status changes: checks the table, records the history."""
    if not st.can_move(task.status, target):
        raise conflict(
            "INVALID_STATUS_TRANSITION",
            f"A {task.status} task cannot become {target}.",
            current_status=task.status,
            allowed_statuses=sorted(st.TRANSITIONS[task.status]),
        )
    now = now or utcnow()
    change = StatusChange(
        from_status=task.status, to_status=target, reason=reason, attempt=task.attempt, at=now
    )
    session = object_session(task)
    if task.id is not None and session is not None and "history" not in task.__dict__:
        # an event handler's transition: add the row without loading the task's whole history
        change.task_pk = task.id
        session.add(change)
    else:
        task.history.append(change)
    task.status = target
    task.updated_at = now


def announce_status(uow: UnitOfWork, task: Task) -> None:
    """A status change core made on its own (worker lost, job paused or resumed): other services'
    read models follow it through task.updated (workers' own reports carry theirs)."""
    uow.emit(
        "task.updated",
        task.brand_id,
        {"id": task.id, "task_id": task.task_id, "changed": {"status": task.status, "attempt": task.attempt}},
    )


def get_task(uow: UnitOfWork, brand_id: int, pk: int, *, lock: bool = False) -> Task:
    stmt = select(Task).where(Task.id == pk, Task.brand_id == brand_id).options(selectinload(Task.history))
    if lock:
        stmt = stmt.with_for_update()
    task = uow.session.scalars(stmt).first()
    if task is None:
        raise not_found("TASK_NOT_FOUND", "Task")
    return task


def _fingerprint(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def create_task(
    uow: UnitOfWork,
    creator: Creator,
    fields: dict[str, Any],
    registry: TaskTypeRegistry,
    *,
    idempotency_key: str | None = None,
    periodic_task_id: int | None = None,
    origin: dict[str, Any] | None = None,
    strict_types: bool = False,
) -> tuple[Task, bool]:
    """Returns (task, created). A repeat of an Idempotency-Key within 24 h returns the first task."""
    now = utcnow()
    if idempotency_key:
        existing = _live_idempotent(uow, creator.brand_id, idempotency_key, now)
        if existing is not None:
            return existing, False
    task_type = fields["task_type"]
    defaults = registry.defaults(task_type)
    if strict_types and defaults is None:
        raise field_error("task_type", f"No worker serves {task_type!r}.", "UNKNOWN_TASK_TYPE")
    scheduled_for = fields.get("scheduled_for")
    if scheduled_for is not None and scheduled_for <= now:
        raise field_error("scheduled_for", "scheduled_for must be in the future.", "SCHEDULE_IN_PAST")
    priority = fields.get("priority") or (defaults or {}).get("priority") or "normal"
    task = Task(
        task_id=new_task_id(),
        brand_id=creator.brand_id,
        brand_name=creator.brand_name,
        created_by_id=creator.user_id,
        created_by_username=creator.username,
        task_type=task_type,
        status=st.PENDING,
        priority=priority,
        priority_rank=st.PRIORITY_RANK[priority],
        queue_name=priority,
        description=fields.get("description") or "",
        progress_percentage=0,
        context_data=fields.get("context_data") or {},
        retry_count=0,
        max_retries=_first(fields.get("max_retries"), (defaults or {}).get("max_retries"), 3),
        timeout_minutes=_first(fields.get("timeout_minutes"), (defaults or {}).get("timeout_minutes"), 60),
        scheduled_for=scheduled_for,
        created_at=now,
        updated_at=now,
        attempt=0,
        lost_deliveries=0,
        has_metrics=False,
        is_resumable=False,
        is_periodic=periodic_task_id is not None,
        periodic_task_id=periodic_task_id,
        idempotency_key=idempotency_key,
        idempotency_expires_at=now + IDEMPOTENCY_TTL if idempotency_key else None,
        request_fingerprint=_fingerprint(fields) if idempotency_key else None,
    )
    task.history.append(
        StatusChange(from_status=None, to_status=st.PENDING, reason="created", attempt=0, at=now)
    )
    # a task waits in the database for its time, and for a live worker that serves its type
    task.dispatch_due_at = scheduled_for or (None if defaults else now)
    uow.session.add(task)
    try:
        uow.session.flush()
    except IntegrityError:
        # the same Idempotency-Key committed by a concurrent request: answer with that task
        uow.rollback()
        existing = _live_idempotent(uow, creator.brand_id, idempotency_key or "", now)
        if existing is None:
            raise
        return existing, False
    data = task_view(task)
    data["persistent"] = bool((defaults or {}).get("persistent"))
    data["periodic_task_id"] = periodic_task_id
    data["origin"] = origin
    uow.emit("task.created", task.brand_id, data)
    if task.dispatch_due_at is None:
        dispatch(uow, task, now)
    return task, True


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _live_idempotent(uow: UnitOfWork, brand_id: int, key: str, now: datetime) -> Task | None:
    task = uow.session.scalars(
        select(Task).where(Task.brand_id == brand_id, Task.idempotency_key == key)
    ).first()
    if task is None:
        return None
    if task.idempotency_expires_at and task.idempotency_expires_at > now:
        return task
    task.idempotency_key = None  # expired: the key is free again
    uow.session.flush()
    return None


def dispatch(uow: UnitOfWork, task: Task, now: datetime, resume: dict[str, Any] | None = None) -> None:
    """Send the task to the work queue of its priority (through the outbox, in this transaction).
    A new attempt number makes any older message for this task stale."""
    task.attempt += 1
    task.dispatch_due_at = None
    task.queue_name = task.priority
    message_id = f"{task.task_id}:{task.attempt}"
    body = {
        "id": task.id,
        "task_id": task.task_id,
        "brand_id": task.brand_id,
        "task_type": task.task_type,
        "priority": task.priority,
        "context_data": task.context_data,
        "attempt": task.attempt,
        "retry_count": task.retry_count,
        "max_retries": task.max_retries,
        "timeout_minutes": task.timeout_minutes,
        "dispatched_at": iso(now),
        "created_at": iso(task.created_at),
        "resume": resume,
        "credentials": attempt_credentials.for_attempt(task),
    }
    uow.send_work(task.priority, message_id, json.dumps(body).encode())


WRITABLE = ("priority", "description", "context_data", "max_retries", "timeout_minutes", "scheduled_for")
RUN_INPUTS = ("context_data", "timeout_minutes", "task_type")


def update_task(uow: UnitOfWork, brand_id: int, pk: int, fields: dict[str, Any]) -> Task:
    task = get_task(uow, brand_id, pk, lock=True)
    now = utcnow()
    changing = {k: v for k, v in fields.items() if getattr(task, k, None) != v}
    if "task_type" in changing:
        raise field_error("task_type", "task_type cannot be changed; create a new task.")
    if task.status == st.RUNNING and any(k in RUN_INPUTS for k in changing):
        raise conflict(
            "INVALID_STATUS_TRANSITION",
            "A running task's inputs cannot change; cancel it first.",
            current_status=task.status,
        )
    if task.status in st.FINAL and changing:
        raise conflict(
            "INVALID_STATUS_TRANSITION",
            f"A {task.status} task cannot be changed.",
            current_status=task.status,
        )
    if "scheduled_for" in changing and changing["scheduled_for"] is not None:
        if changing["scheduled_for"] <= now:
            raise field_error("scheduled_for", "scheduled_for must be in the future.", "SCHEDULE_IN_PAST")
        if task.status not in (st.PENDING, st.RETRYING) or task.dispatch_due_at is None:
            raise conflict(
                "INVALID_STATUS_TRANSITION",
                "Only a task still waiting for its time can be rescheduled.",
                current_status=task.status,
            )
        task.dispatch_due_at = changing["scheduled_for"]
    for key in WRITABLE:
        if key in changing:
            setattr(task, key, changing[key])
    if "priority" in changing:
        task.priority_rank = st.PRIORITY_RANK[task.priority]
        if task.status != st.RUNNING:
            task.queue_name = task.priority
        if task.status == st.PENDING and task.dispatch_due_at is None and task.started_at is None:
            # already queued: re-dispatch to the new queue; the old message is now stale
            dispatch(uow, task, now)
    if changing:
        task.updated_at = now
        uow.emit(
            "task.updated",
            task.brand_id,
            {"id": task.id, "task_id": task.task_id, "changed": _jsonable(changing)},
        )
    return task


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in fields.items()}


def delete_task(uow: UnitOfWork, brand_id: int, pk: int) -> None:
    task = get_task(uow, brand_id, pk, lock=True)
    if task.status == st.RUNNING:
        raise conflict(
            "INVALID_STATUS_TRANSITION",
            "A running task cannot be deleted; cancel it first.",
            current_status=task.status,
        )
    uow.emit("task.deleted", task.brand_id, {"id": task.id, "task_id": task.task_id})
    uow.session.delete(task)


def retry_task(uow: UnitOfWork, brand_id: int, pk: int, options: dict[str, Any]) -> dict[str, Any]:
    task = get_task(uow, brand_id, pk, lock=True)
    if task.status not in st.RETRYABLE_FROM:
        raise conflict(
            "INVALID_STATUS_TRANSITION",
            f"Only {' or '.join(st.RETRYABLE_FROM)} tasks can be retried.",
            current_status=task.status,
            allowed_statuses=list(st.RETRYABLE_FROM),
        )
    if task.retry_count >= task.max_retries:
        raise conflict(
            "MAX_RETRIES_EXCEEDED",
            f"This task was already retried {task.retry_count} times (max_retries {task.max_retries}).",
            retry_count=task.retry_count,
            max_retries=task.max_retries,
        )
    now = utcnow()
    transition(task, st.PENDING, "manual retry", now)
    task.retry_count += 1
    task.lost_deliveries = 0
    task.completed_at = None
    if options.get("new_priority"):
        task.priority = options["new_priority"]
        task.priority_rank = st.PRIORITY_RANK[task.priority]
    if options.get("reset_progress"):
        task.progress_percentage = 0
        task.current_step = None
    if options.get("clear_errors"):
        task.error_message = None
        task.error_traceback = None
    uow.emit(
        "task.retried",
        task.brand_id,
        {"id": task.id, "task_id": task.task_id, "retry_count": task.retry_count, "reason": "manual"},
    )
    dispatch(uow, task, now)
    return {
        "message": "Task queued for retry.",
        "task_id": task.task_id,
        "new_status": task.status,
        "retry_count": task.retry_count,
        "max_retries": task.max_retries,
        "estimated_start": iso(now),
    }


def cancel_task(uow: UnitOfWork, brand_id: int, pk: int, reason: str = "cancelled by user") -> dict[str, Any]:
    task = get_task(uow, brand_id, pk, lock=True)
    if task.status == st.COMPLETED:
        raise conflict(
            "TASK_ALREADY_COMPLETED", "A completed task cannot be cancelled.", current_status=task.status
        )
    if task.status not in st.CANCELLABLE_FROM:
        raise conflict(
            "INVALID_STATUS_TRANSITION",
            f"A {task.status} task cannot be cancelled.",
            current_status=task.status,
            allowed_statuses=list(st.CANCELLABLE_FROM),
        )
    previous = task.status
    now = utcnow()
    transition(task, st.CANCELLED, reason, now)
    task.completed_at = now
    task.dispatch_due_at = None
    task.lease_expires_at = None
    uow.emit(
        "task.cancelled",
        task.brand_id,
        {
            "id": task.id,
            "task_id": task.task_id,
            "previous_status": previous,
            "attempt": task.attempt,
            "worker_name": task.worker_name,
        },
    )
    return {
        "message": "Task cancelled.",
        "task_id": task.task_id,
        "previous_status": previous,
        "cancelled_at": iso(now),
    }
