"""core's use cases. Each owns its transaction (a unit of work) and writes its events and work
messages to the outbox in that transaction. Free of Flask: HTTP and events both call in here.

Creating tasks is the hot path (every POST, every bulk element, every fired schedule): it goes
through SQLAlchemy Core with the rows built in memory (one INSERT for the tasks, one for their
history, one for the outbox at commit) and the task.created event doubles as the response body.
The rarer use cases (update, retry, cancel, delete) load the task through the ORM."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session, selectinload

from shared import task_states as st
from shared.auth import Principal
from shared.crud import get_owned
from shared.domain_errors import (
    Conflict,
    IdempotencyKeyReused,
    InvalidField,
    InvalidTransition,
    ValidationFailed,
)
from shared.events import catalog
from shared.events.envelope import iso, utcnow
from shared.unit_of_work import UnitOfWork

from .. import attempt_credentials
from ..models import StatusChange, Task, TaskLease
from ..task_types import TaskTypeRegistry

IDEMPOTENCY_TTL = timedelta(hours=24)
IDEMPOTENCY_KEY_MAX = 255
BULK_MAX = 1000
DUE_SIGNAL = "due"  # the dispatcher's wake-up: a task got a time to be dispatched at

TASKS = Task.__table__


@dataclass(frozen=True)
class Creator:
    brand_id: int
    brand_name: str
    user_id: str
    username: str

    @classmethod
    def of(cls, principal: Principal) -> Creator:
        return cls(principal.brand_id, principal.brand_name, principal.user_id, principal.username)


@dataclass(frozen=True)
class NewTask:
    """One task to create: its fields as the API validated them, and where it comes from."""

    fields: dict[str, Any]
    idempotency_key: str | None = None
    periodic_task_id: int | None = None
    origin: dict[str, Any] | None = None


def new_task_id() -> str:
    return "task_" + secrets.token_hex(6)


def task_headers(is_periodic: bool, is_persistent: bool) -> dict[str, str]:
    """Headers of core's task events, for the consumers that bind only to what they act on."""
    headers = {}
    if is_periodic:
        headers[catalog.PERIODIC_HEADER] = "1"
    if is_persistent:
        headers[catalog.PERSISTENT_HEADER] = "1"
    return headers


def publish_task_event(uow: UnitOfWork, task: Task, event: catalog.Event) -> None:
    uow.publish(event, task.brand_id, task_headers(task.is_periodic, task.is_persistent))


def transition(task: Task, target: str, reason: str, now: datetime | None = None) -> None:
    """Every status change of an ORM-loaded task: checks the table, records the history.
    (Worker reports are applied in batches by services/core/attempts.py with the same table.)"""
    if not st.can_move(task.status, target):
        raise InvalidTransition(
            f"A {task.status} task cannot become {target}.",
            current_status=task.status,
            allowed_statuses=sorted(st.TRANSITIONS[task.status]),
        )
    now = now or utcnow()
    change = StatusChange(
        from_status=task.status, to_status=target, reason=reason[:500], attempt=task.attempt, at=now
    )
    session = object_session(task)
    if task.id is not None and session is not None and "history" not in task.__dict__:
        # add the row without loading the task's whole history
        change.task_pk = task.id
        session.add(change)
    else:
        task.history.append(change)
    task.status = target
    task.updated_at = now


def announce_status(uow: UnitOfWork, task: Task, reason: str, **changed: Any) -> None:
    """A status change core made on its own (worker lost, job paused or resumed): the other
    services' read models follow it through task.updated (with any other field it changed)."""
    publish_task_event(
        uow,
        task,
        catalog.TaskUpdated(
            id=task.id,
            task_id=task.task_id,
            changed={"status": task.status, "attempt": task.attempt, **changed},
            reason=reason,
        ),
    )


def get_task(session: Session, brand_id: int, pk: int, *, lock: bool = False) -> Task:
    """The brand's task with its history (another brand's is the same 404 as a missing one)."""
    history = [selectinload(Task.history)]
    return get_owned(
        session, Task, brand_id, pk, "Task", lock=lock, options=history, error_code="TASK_NOT_FOUND"
    )


def _fingerprint(fields: dict[str, Any]) -> str:
    """The request as the key remembers it: a field given as null and a field left out are the
    same request (scheduling's run-now call and its schedule.fired event spell it both ways)."""
    given = {k: v for k, v in fields.items() if v is not None}
    return hashlib.sha256(json.dumps(given, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------------------------ creating


def create_task(
    uow: UnitOfWork,
    creator: Creator,
    new: NewTask,
    registry: TaskTypeRegistry,
    *,
    strict_types: bool = False,
) -> tuple[catalog.TaskCreated, bool]:
    """Returns (the task as the API shows it, created?). A repeat of an Idempotency-Key within
    24 h returns the first task; the same key with another body is 422 IDEMPOTENCY_KEY_REUSED."""
    [(view, created)] = create_tasks(uow, creator, [new], registry, strict_types=strict_types)
    return view, created


def create_tasks(
    uow: UnitOfWork,
    creator: Creator,
    news: Sequence[NewTask],
    registry: TaskTypeRegistry,
    *,
    strict_types: bool = False,
    second_try: bool = False,
) -> list[tuple[catalog.TaskCreated, bool]]:
    """Create several tasks in this transaction, all or none (a bad element raises with its index
    in the field names when there are several). Each is (view, created) in the given order."""
    now = utcnow()
    prefix = (lambda i: f"tasks.{i}.") if len(news) > 1 else (lambda i: "")
    existing = _answered_by_key(uow, creator.brand_id, news, now, prefix)
    rows: list[dict[str, Any]] = []
    errors: dict[str, list[str]] = {}
    for index, new in enumerate(news):
        if index in existing:
            continue
        try:
            rows.append(_new_row(creator, new, registry, now, strict_types))
        except InvalidField as error:
            if len(news) == 1:
                raise  # a single create keeps its precise error code (SCHEDULE_IN_PAST...)
            errors[prefix(index) + error.field] = [error.message]
    if errors:
        raise ValidationFailed(errors)
    if rows and any(row["idempotency_key"] for row in rows) and not second_try:
        try:
            # a savepoint only where a concurrent request may take the same key first
            with uow.session.begin_nested():
                ids = _insert(uow, rows)
        except IntegrityError:
            # that request committed first: answer with its tasks, as a repeat would be
            return create_tasks(uow, creator, news, registry, strict_types=strict_types, second_try=True)
    elif rows:
        ids = _insert(uow, rows)
    if rows:
        for row, pk in zip(rows, ids, strict=True):
            row["id"] = pk
    fresh = iter(rows)
    results: list[tuple[catalog.TaskCreated, bool]] = []
    for index, new in enumerate(news):
        if index in existing:
            results.append((existing[index], False))
            continue
        row = next(fresh)
        view = _created_event(row, new)
        uow.publish(view, row["brand_id"], task_headers(row["is_periodic"], row["is_persistent"]))
        if row["dispatch_due_at"] is None:
            uow.send_work(work_order(row, now), f"{row['task_id']}:{row['attempt']}")
        else:
            uow.wake(DUE_SIGNAL)
        results.append((view, True))
    return results


def _new_row(
    creator: Creator, new: NewTask, registry: TaskTypeRegistry, now: datetime, strict_types: bool
) -> dict[str, Any]:
    fields = new.fields
    task_type = fields["task_type"]
    defaults = registry.defaults(task_type)
    if strict_types and defaults is None:
        raise InvalidField("task_type", f"No worker serves {task_type!r}.", "UNKNOWN_TASK_TYPE")
    scheduled_for = fields.get("scheduled_for")
    if scheduled_for is not None and scheduled_for <= now:
        raise InvalidField("scheduled_for", "scheduled_for must be in the future.", "SCHEDULE_IN_PAST")
    priority = fields.get("priority") or (defaults or {}).get("priority") or "normal"
    # dispatched in this transaction when it may run now and a live worker serves its type;
    # otherwise it waits in the database for its time (or its worker): the dispatcher sends it
    runs_now = scheduled_for is None and defaults is not None
    return {
        "task_id": new_task_id(),
        "brand_id": creator.brand_id,
        "brand_name": creator.brand_name,
        "created_by_id": creator.user_id,
        "created_by_username": creator.username,
        "task_type": task_type,
        "status": st.PENDING,
        "priority": priority,
        "priority_rank": st.PRIORITY_RANK[priority],
        "queue_name": priority,
        "description": fields.get("description") or "",
        "progress_percentage": 0,
        "current_step": None,
        "context_data": fields.get("context_data") or {},
        "result_data": None,
        "error_message": None,
        "error_traceback": None,
        "retry_count": 0,
        "max_retries": _first(fields.get("max_retries"), (defaults or {}).get("max_retries"), 3),
        "timeout_minutes": _first(fields.get("timeout_minutes"), (defaults or {}).get("timeout_minutes"), 60),
        "scheduled_for": scheduled_for,
        "started_at": None,
        "completed_at": None,
        "created_at": now,
        "updated_at": now,
        "worker_name": None,
        "attempt": 1 if runs_now else 0,
        "dispatch_due_at": None if runs_now else (scheduled_for or now),
        "is_persistent": bool((defaults or {}).get("persistent")),
        "lost_deliveries": 0,
        "idempotency_key": new.idempotency_key,
        "idempotency_expires_at": now + IDEMPOTENCY_TTL if new.idempotency_key else None,
        "request_fingerprint": _fingerprint(fields) if new.idempotency_key else None,
        "has_metrics": False,
        "metrics": None,
        "execution_time_ms": None,
        "is_resumable": False,
        "is_periodic": new.periodic_task_id is not None,
        "periodic_task_id": new.periodic_task_id,
    }


def _insert(uow: UnitOfWork, rows: list[dict[str, Any]]) -> list[int]:
    # no history row for the creation: the API tells it from created_at (schemas.py)
    result = uow.session.execute(insert(TASKS).returning(TASKS.c.id, sort_by_parameter_order=True), rows)
    return list(result.scalars())


def _created_event(row: dict[str, Any], new: NewTask) -> catalog.TaskCreated:
    return catalog.TaskCreated(
        id=row["id"],
        task_id=row["task_id"],
        task_type=row["task_type"],
        status=row["status"],
        priority=row["priority"],
        queue_name=row["queue_name"],
        description=row["description"],
        progress_percentage=0,
        brand={"id": row["brand_id"], "name": row["brand_name"]},
        created_by={"id": row["created_by_id"], "username": row["created_by_username"]},
        created_at=iso(row["created_at"]) or "",
        updated_at=iso(row["updated_at"]) or "",
        scheduled_for=iso(row["scheduled_for"]),
        context_data=row["context_data"],
        retry_count=0,
        max_retries=row["max_retries"],
        timeout_minutes=row["timeout_minutes"],
        is_periodic=row["is_periodic"],
        persistent=row["is_persistent"],
        periodic_task_id=row["periodic_task_id"],
        origin=new.origin,
    )


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _answered_by_key(
    uow: UnitOfWork, brand_id: int, news: Sequence[NewTask], now: datetime, prefix: Any
) -> dict[int, catalog.TaskCreated]:
    """Elements whose Idempotency-Key was used within 24 h: the first task answers them (the same
    body), or the request is refused (another body). An expired key is freed."""
    keys = {new.idempotency_key for new in news if new.idempotency_key}
    if not keys:
        return {}
    for key in keys:
        if len(key) > IDEMPOTENCY_KEY_MAX:
            raise InvalidField("Idempotency-Key", f"At most {IDEMPOTENCY_KEY_MAX} characters.")
    tasks = {
        t.idempotency_key: t
        for t in uow.session.scalars(
            select(Task).where(Task.brand_id == brand_id, Task.idempotency_key.in_(keys))
        )
    }
    answered: dict[int, catalog.TaskCreated] = {}
    reused: dict[str, list[str]] = {}
    for index, new in enumerate(news):
        task = tasks.get(new.idempotency_key or "")
        if task is None:
            continue
        if task.idempotency_expires_at is None or task.idempotency_expires_at <= now:
            task.idempotency_key = None  # expired: the key is free again
            continue
        if task.request_fingerprint != _fingerprint(new.fields):
            reused[prefix(index) + "idempotency_key"] = [
                "This key was used within 24 h for a different request."
            ]
            continue
        answered[index] = view_of(task)
    if reused:
        raise IdempotencyKeyReused(reused)
    uow.session.flush()
    return answered


def view_of(task: Task) -> catalog.TaskCreated:
    """An ORM-loaded task as the API shows it (the shape of task.created)."""
    metrics = catalog.read(task.metrics, catalog.TaskMetricsSummary) if task.metrics else None
    return catalog.TaskCreated(
        id=task.id,
        task_id=task.task_id,
        task_type=task.task_type,
        status=task.status,
        priority=task.priority,
        queue_name=task.queue_name,
        description=task.description,
        progress_percentage=task.progress_percentage,
        current_step=task.current_step,
        brand={"id": task.brand_id, "name": task.brand_name},
        created_by={"id": task.created_by_id, "username": task.created_by_username},
        created_at=iso(task.created_at) or "",
        updated_at=iso(task.updated_at) or "",
        scheduled_for=iso(task.scheduled_for),
        started_at=iso(task.started_at),
        completed_at=iso(task.completed_at),
        context_data=task.context_data,
        result_data=task.result_data,
        error_message=task.error_message,
        retry_count=task.retry_count,
        max_retries=task.max_retries,
        timeout_minutes=task.timeout_minutes,
        worker_name=task.worker_name,
        has_metrics=task.has_metrics,
        metrics=metrics,
        is_resumable=task.is_resumable,
        is_periodic=task.is_periodic,
        persistent=task.is_persistent,
        periodic_task_id=task.periodic_task_id,
    )


# ------------------------------------------------------------------------------------ dispatching


def work_order(task: Any, now: datetime, resume: dict[str, Any] | None = None) -> catalog.WorkOrder:
    """The order to run the task's current attempt (`task` is a row dict or an ORM Task)."""
    get: Callable[[str], Any] = task.get if isinstance(task, dict) else lambda key: getattr(task, key)
    return catalog.WorkOrder(
        id=get("id"),
        task_id=get("task_id"),
        brand_id=get("brand_id"),
        task_type=get("task_type"),
        priority=get("priority"),
        context_data=get("context_data"),
        attempt=get("attempt"),
        retry_count=get("retry_count"),
        max_retries=get("max_retries"),
        timeout_minutes=get("timeout_minutes"),
        dispatched_at=iso(now),
        created_at=iso(get("created_at")),
        resume=resume,
        periodic=bool(get("is_periodic")),
        persistent=bool(get("is_persistent")),
        credentials=attempt_credentials.for_attempt(task if not isinstance(task, dict) else _Attempt(task)),
    )


class _Attempt:
    """A task row read as the attributes attempt_credentials needs."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.id, self.brand_id, self.attempt = row["id"], row["brand_id"], row["attempt"]
        self.timeout_minutes = row["timeout_minutes"]


def dispatch(uow: UnitOfWork, task: Task, now: datetime, resume: dict[str, Any] | None = None) -> None:
    """Send the task to the work queue of its priority (through the outbox, in this transaction).
    A new attempt number makes any older message for this task stale."""
    task.attempt += 1
    task.dispatch_due_at = None
    task.queue_name = task.priority
    uow.send_work(work_order(task, now, resume), f"{task.task_id}:{task.attempt}")


def revoke(uow: UnitOfWork, task: Task, attempt: int | None, worker: str | None) -> None:
    """Tell workers to drop or stop an attempt core no longer wants."""
    publish_task_event(
        uow,
        task,
        catalog.TaskAttemptRevoked(id=task.id, task_id=task.task_id, attempt=attempt, worker_name=worker),
    )


def drop_lease(uow: UnitOfWork, task: Task) -> None:
    uow.session.query(TaskLease).filter(TaskLease.task_pk == task.id).delete(synchronize_session=False)


# ------------------------------------------------------------------------------------ the others

WRITABLE = ("priority", "description", "context_data", "max_retries", "timeout_minutes", "scheduled_for")
RUN_INPUTS = ("context_data", "timeout_minutes", "task_type")


def update_task(uow: UnitOfWork, brand_id: int, pk: int, fields: dict[str, Any]) -> Task:
    task = get_task(uow.session, brand_id, pk, lock=True)
    now = utcnow()
    changing = {k: v for k, v in fields.items() if getattr(task, k, None) != v}
    if "task_type" in changing:
        raise InvalidField("task_type", "task_type cannot be changed; create a new task.")
    if task.status == st.RUNNING and any(k in RUN_INPUTS for k in changing):
        raise InvalidTransition(
            "A running task's inputs cannot change; cancel it first.",
            current_status=task.status,
        )
    if task.status in st.FINAL and changing:
        raise InvalidTransition(
            f"A {task.status} task cannot be changed.",
            current_status=task.status,
        )
    if "scheduled_for" in changing and changing["scheduled_for"] is not None:
        if changing["scheduled_for"] <= now:
            raise InvalidField("scheduled_for", "scheduled_for must be in the future.", "SCHEDULE_IN_PAST")
        if task.status not in (st.PENDING, st.RETRYING) or task.dispatch_due_at is None:
            raise InvalidTransition(
                "Only a task still waiting for its time can be rescheduled.",
                current_status=task.status,
            )
        task.dispatch_due_at = changing["scheduled_for"]
        uow.wake(DUE_SIGNAL)
    for key in WRITABLE:
        if key in changing:
            setattr(task, key, changing[key])
    if "priority" in changing:
        task.priority_rank = st.PRIORITY_RANK[task.priority]
        if task.status != st.RUNNING:
            task.queue_name = task.priority
    queued = task.status == st.PENDING and task.dispatch_due_at is None
    if queued and ("priority" in changing or any(k in RUN_INPUTS for k in changing)):
        # already queued with the old values: queue it again with the new ones; the old message
        # is now stale, and workers that hold it are told to drop it
        stale = task.attempt
        dispatch(uow, task, now)
        revoke(uow, task, stale, None)
    if changing:
        task.updated_at = now
        publish_task_event(
            uow, task, catalog.TaskUpdated(id=task.id, task_id=task.task_id, changed=_jsonable(changing))
        )
    return task


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in fields.items()}


def delete_task(uow: UnitOfWork, brand_id: int, pk: int) -> None:
    task = get_task(uow.session, brand_id, pk, lock=True)
    if task.status == st.RUNNING:
        raise InvalidTransition(
            "A running task cannot be deleted; cancel it first.",
            current_status=task.status,
        )
    # workers holding its queued attempt drop it (control broadcast)
    publish_task_event(uow, task, catalog.TaskDeleted(id=task.id, task_id=task.task_id, attempt=task.attempt))
    drop_lease(uow, task)
    uow.session.delete(task)


def retry_task(uow: UnitOfWork, brand_id: int, pk: int, options: dict[str, Any]) -> dict[str, Any]:
    task = get_task(uow.session, brand_id, pk, lock=True)
    if task.status not in st.RETRYABLE_FROM:
        raise InvalidTransition(
            f"Only {' or '.join(st.RETRYABLE_FROM)} tasks can be retried.",
            current_status=task.status,
            allowed_statuses=list(st.RETRYABLE_FROM),
        )
    if task.retry_count >= task.max_retries:
        raise Conflict(
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
    publish_task_event(
        uow,
        task,
        catalog.TaskRetried(id=task.id, task_id=task.task_id, retry_count=task.retry_count, reason="manual"),
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
    task = get_task(uow.session, brand_id, pk, lock=True)
    if task.status == st.COMPLETED:
        raise Conflict(
            "TASK_ALREADY_COMPLETED", "A completed task cannot be cancelled.", current_status=task.status
        )
    if task.status not in st.CANCELLABLE_FROM:
        raise InvalidTransition(
            f"A {task.status} task cannot be cancelled.",
            current_status=task.status,
            allowed_statuses=list(st.CANCELLABLE_FROM),
        )
    previous = task.status
    now = utcnow()
    transition(task, st.CANCELLED, reason, now)
    task.completed_at = now
    task.dispatch_due_at = None
    drop_lease(uow, task)
    publish_task_event(
        uow,
        task,
        catalog.TaskCancelled(
            id=task.id,
            task_id=task.task_id,
            previous_status=previous,
            attempt=task.attempt,
            worker_name=task.worker_name,
        ),
    )
    return {
        "message": "Task cancelled.",
        "task_id": task.task_id,
        "previous_status": previous,
        "cancelled_at": iso(now),
    }
