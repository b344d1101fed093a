"""How core follows execution: the attempt reports workers send (started, progress, completed,
failed, released), their heartbeats (leases), worker loss, and the dispatcher that sends tasks
whose time has come to the work queues.

Core is the only writer of a task's status. Reports come in batches (one transaction per batch of
deliveries): the batch's tasks are read and locked with one query, each report is applied in
memory in delivery order with the status table of shared/task_states.py, and what changed is
written back with one statement per table. The public task events (task.started, task.completed,
task.failed, task.retried...) are emitted here, in the same transaction.

Ordering rule: a report about attempt N only applies while the task is on attempt N, and never
moves a task backwards (a late progress after completion, a result after a cancel, a started
after a newer dispatch all change nothing)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from shared import task_states as st
from shared.db import is_postgres, upsert
from shared.events import catalog
from shared.events.envelope import Envelope, parse_iso, utcnow
from shared.events.envelope import iso as _iso
from shared.metric_fields import reported_value
from shared.unit_of_work import UnitOfWork

from .models import StatusChange, Task, TaskLease, WorkerPresence
from .tasks.service import (
    DUE_SIGNAL,
    announce_status,
    dispatch,
    drop_lease,
    publish_task_event,
    revoke,
    task_headers,
    transition,
)

log = logging.getLogger(__name__)

TASKS, HISTORY, LEASES = Task.__table__, StatusChange.__table__, TaskLease.__table__
LEASE_SIGNAL = "leases"  # the reaper's wake-up: a lease was taken
SUMMARY = ("execution_time_ms", "memory_usage_mb", "cost_usd")

TASKS_DEAD_LETTERED = Counter(
    "taskhub_tasks_dead_lettered_total", "Tasks parked after too many lost deliveries"
)


class ExecutionPolicy:
    """Leases and poison bounds (configurable; tests shorten them)."""

    def __init__(self, lease_seconds: float = 30.0, max_lost_deliveries: int = 3) -> None:
        self.lease = timedelta(seconds=lease_seconds)
        self.max_lost_deliveries = max_lost_deliveries


# --------------------------------------------------------------------------- attempt reports

# what a report may read or change of its task
_COLUMNS = (
    "id", "brand_id", "task_id", "task_type", "priority", "status", "attempt", "worker_name",
    "created_at", "started_at", "completed_at", "updated_at", "progress_percentage", "current_step",
    "result_data", "error_message", "error_traceback", "retry_count", "max_retries",
    "dispatch_due_at", "lost_deliveries", "has_metrics", "metrics", "execution_time_ms",
    "is_periodic", "is_persistent", "queue_name", "context_data", "timeout_minutes",
)  # fmt: skip


class _Batch:
    """The tasks of one batch of reports, as rows changed in memory, and what to write back."""

    def __init__(self, uow: UnitOfWork, policy: ExecutionPolicy, rows: dict[int, dict[str, Any]]) -> None:
        self.uow, self.policy, self.rows = uow, policy, rows
        self.now = utcnow()
        self.changed: dict[int, set[str]] = {}
        self.history: list[dict[str, Any]] = []
        self.leases: dict[int, dict[str, Any]] = {}
        self.released_leases: set[int] = set()
        self.redispatch: list[int] = []
        self.parked: list[int] = []  # lost too often: dead-lettered after the batch's writes

    def set(self, task: dict[str, Any], **values: Any) -> None:
        task.update(values)
        self.changed.setdefault(task["id"], set()).update(values)

    def move(self, task: dict[str, Any], target: str, reason: str) -> None:
        if not st.can_move(task["status"], target):
            raise AssertionError(f"{task['status']} -> {target} is not in the status table")
        self.history.append(
            {
                "task_pk": task["id"],
                "from_status": task["status"],
                "to_status": target,
                "reason": reason[:500],
                "attempt": task["attempt"],
                "at": self.now,
            }
        )
        self.set(task, status=target, updated_at=self.now)

    def publish(self, task: dict[str, Any], event: catalog.Event) -> None:
        self.uow.publish(event, task["brand_id"], task_headers(task["is_periodic"], task["is_persistent"]))

    def hold_lease(self, task: dict[str, Any], worker: str) -> None:
        self.released_leases.discard(task["id"])
        self.leases[task["id"]] = {
            "task_pk": task["id"],
            "attempt": task["attempt"],
            "worker_name": worker,
            "expires_at": self.now + self.policy.lease,
        }

    def release_lease(self, task: dict[str, Any]) -> None:
        self.leases.pop(task["id"], None)
        self.released_leases.add(task["id"])

    def write(self) -> None:
        session = self.uow.session
        if self.changed:
            columns = sorted(set().union(*self.changed.values()))
            statement = (
                update(TASKS)
                .where(TASKS.c.id == bindparam("_pk"))
                .values({name: bindparam(name, type_=TASKS.c[name].type) for name in columns})
            )
            session.execute(
                statement,
                [
                    {"_pk": pk, **{name: self.rows[pk][name] for name in columns}}
                    for pk in sorted(self.changed)
                ],
                execution_options={"synchronize_session": False},
            )
        if self.history:
            session.execute(HISTORY.insert(), self.history)
        if self.released_leases:
            session.execute(delete(LEASES).where(LEASES.c.task_pk.in_(sorted(self.released_leases))))
        if self.leases:
            _write_leases(session, [self.leases[pk] for pk in sorted(self.leases)])
            self.uow.wake(LEASE_SIGNAL)


def _started(batch: _Batch, task: dict[str, Any], report: catalog.AttemptStarted) -> None:
    worker = report.worker_name
    if report.attempt != task["attempt"] or task["status"] not in (st.PENDING, st.RETRYING):
        if not (
            task["status"] == st.RUNNING
            and report.attempt == task["attempt"]
            and task["worker_name"] == worker
        ):
            # a stale or cancelled attempt started somewhere, or a second delivery of the
            # running attempt (its first hold was lost): tell that worker to stop it
            batch.publish(task, _revoked(task, report.attempt, worker))
        return
    if report.deliveries > 1:
        # earlier holders of this order died within their hold window: lost deliveries
        lost = task["lost_deliveries"] + report.deliveries - 1
        batch.set(task, lost_deliveries=lost)
        if lost >= batch.policy.max_lost_deliveries:
            batch.parked.append(task["id"])
            batch.publish(task, _revoked(task, report.attempt, worker))
            return
    _run(batch, task, report.worker_name, report.started_at)
    batch.hold_lease(task, worker)
    batch.publish(
        task,
        catalog.TaskStarted(
            **_attempt_of(task),
            worker_name=worker,
            started_at=report.started_at,
        ),
    )


def _run(batch: _Batch, task: dict[str, Any], worker: str, started_at: str | None) -> None:
    batch.move(task, st.RUNNING, f"started on {worker}")
    batch.set(task, started_at=parse_iso(started_at) or batch.now, worker_name=worker)


def _progress(batch: _Batch, task: dict[str, Any], report: catalog.AttemptProgress) -> None:
    if report.attempt != task["attempt"] or task["status"] != st.RUNNING:
        return
    progress = max(task["progress_percentage"], max(0, min(100, report.progress_percentage)))
    step = report.current_step[:200] if report.current_step is not None else task["current_step"]
    batch.set(task, progress_percentage=progress, current_step=step, updated_at=batch.now)
    batch.hold_lease(task, report.worker_name)
    batch.publish(
        task,
        catalog.TaskProgress(
            **_attempt_of(task),
            progress_percentage=progress,
            current_step=step,
        ),
    )


def _settle_start(
    batch: _Batch, task: dict[str, Any], report: catalog.AttemptCompleted | catalog.AttemptFailed
) -> bool:
    """A short attempt reports its start with its outcome; bring the task to running first."""
    if report.attempt != task["attempt"]:
        return False
    if task["status"] in (st.PENDING, st.RETRYING):
        _run(batch, task, report.worker_name, report.started_at)
    return task["status"] == st.RUNNING


def _metrics_summary(batch: _Batch, task: dict[str, Any], metrics: catalog.AttemptMetrics) -> None:
    """core shows has_metrics and the summary from the outcome itself (no round trip through
    monitoring), clamped with the rules monitoring stores them with."""
    summary = {name: reported_value(name, getattr(metrics, name)) for name in SUMMARY}
    batch.set(task, has_metrics=True, metrics=summary, execution_time_ms=summary["execution_time_ms"])


def _outcome(
    task: dict[str, Any], report: catalog.AttemptCompleted | catalog.AttemptFailed
) -> dict[str, Any]:
    return {
        "id": task["id"],
        "task_id": task["task_id"],
        "attempt": task["attempt"],
        "worker_name": report.worker_name,
        "task_type": task["task_type"],
        "priority": task["priority"],
        "retry_count": task["retry_count"],
        "max_retries": task["max_retries"],
        "created_at": _iso(task["created_at"]),
        "started_at": _iso(task["started_at"]),
        "completed_at": _iso(task["completed_at"]),
        "metrics": report.metrics,
    }


def _completed(batch: _Batch, task: dict[str, Any], report: catalog.AttemptCompleted) -> None:
    if not _settle_start(batch, task, report):
        return
    batch.move(task, st.COMPLETED, "completed")
    finished = min(parse_iso(report.finished_at) or batch.now, batch.now)
    batch.set(
        task,
        progress_percentage=100,
        result_data=report.result_data,
        completed_at=finished,
        lost_deliveries=0,
        worker_name=report.worker_name,
    )
    _metrics_summary(batch, task, report.metrics)
    batch.release_lease(task)
    batch.publish(task, catalog.TaskCompleted(**_outcome(task, report), result_data=report.result_data))


def _failed(batch: _Batch, task: dict[str, Any], report: catalog.AttemptFailed) -> None:
    if not _settle_start(batch, task, report):
        return
    batch.set(
        task,
        error_message=str(report.error_message or "failed")[:10000],
        error_traceback=report.traceback,
        worker_name=report.worker_name,
    )
    _metrics_summary(batch, task, report.metrics)
    batch.release_lease(task)
    # core decides whether it runs again (no consumer re-derives this rule)
    will_retry = report.retryable and task["retry_count"] < task["max_retries"]
    delay: float | None = None
    if will_retry:
        delay = max(0.0, float(report.retry_delay_seconds)) if report.retry_delay_seconds is not None else 1.0
        batch.move(task, st.RETRYING, f"attempt {task['attempt']} failed; retry in {delay:.1f}s")
    else:
        batch.move(task, st.FAILED, "failed")
        batch.set(task, completed_at=batch.now)
    outcome = _outcome(task, report)  # the attempt that failed, with the retries it had
    if will_retry:
        batch.set(
            task,
            retry_count=task["retry_count"] + 1,
            dispatch_due_at=batch.now + timedelta(seconds=delay or 0),
        )
        batch.uow.wake(DUE_SIGNAL)
    batch.publish(
        task,
        catalog.TaskFailed(
            **outcome,
            error_message=task["error_message"],
            will_retry=will_retry,
            retry_delay_seconds=delay,
        ),
    )
    if will_retry:
        batch.publish(
            task,
            catalog.TaskRetried(
                id=task["id"],
                task_id=task["task_id"],
                retry_count=task["retry_count"],
                reason="automatic",
                delay_seconds=delay,
            ),
        )


def _released(batch: _Batch, task: dict[str, Any], report: catalog.AttemptReleased) -> None:
    """A worker shutting down handed back an attempt it could not finish: run it again now."""
    if report.attempt != task["attempt"] or task["status"] != st.RUNNING:
        return
    batch.move(task, st.PENDING, f"handed back by {report.worker_name} ({report.reason})")
    batch.set(task, worker_name=None)
    batch.release_lease(task)
    batch.redispatch.append(task["id"])


_APPLY: dict[type[catalog.Event], Callable[[_Batch, dict[str, Any], Any], None]] = {
    catalog.AttemptStarted: _started,
    catalog.AttemptProgress: _progress,
    catalog.AttemptCompleted: _completed,
    catalog.AttemptFailed: _failed,
    catalog.AttemptReleased: _released,
}
REPORTS = tuple(cls.event_type for cls in _APPLY)


def _attempt_of(task: dict[str, Any]) -> dict[str, Any]:
    """How an event names a task's current attempt."""
    return {"id": task["id"], "task_id": task["task_id"], "attempt": task["attempt"]}


def _revoked(task: dict[str, Any], attempt: int, worker: str | None) -> catalog.TaskAttemptRevoked:
    return catalog.TaskAttemptRevoked(
        id=task["id"], task_id=task["task_id"], attempt=attempt, worker_name=worker
    )


def apply_reports(policy: ExecutionPolicy) -> Callable[[UnitOfWork, Sequence[Envelope]], None]:
    """The batch handler of the attempt reports."""

    def handle(uow: UnitOfWork, envelopes: Sequence[Envelope]) -> None:
        reports = [(env, catalog.parse(env.event_type, env.data)) for env in envelopes]
        ids = sorted({report.id for _, report in reports if isinstance(report, catalog.AttemptReport)})
        rows = _locked_rows(uow, ids)
        batch = _Batch(uow, policy, rows)
        for env, report in reports:
            if not isinstance(report, catalog.AttemptReport):
                continue
            task = rows.get(report.id)
            if task is None or (env.brand_id is not None and task["brand_id"] != env.brand_id):
                continue  # a deleted task, or a report naming another brand's task
            _APPLY[type(report)](batch, task, report)
        batch.write()
        if batch.redispatch:
            _redispatch(uow, batch.redispatch)
        if batch.parked:
            for parked in uow.session.scalars(select(Task).where(Task.id.in_(batch.parked))):
                dead_letter(uow, parked, f"its worker died {parked.lost_deliveries} times while holding it")

    return handle


def _locked_rows(uow: UnitOfWork, ids: list[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    query = select(*(TASKS.c[name] for name in _COLUMNS)).where(TASKS.c.id.in_(ids)).order_by(TASKS.c.id)
    if is_postgres(uow.session.get_bind()):
        query = query.with_for_update()  # in id order: two consumers never deadlock
    return {row.id: dict(row._mapping) for row in uow.session.execute(query)}


def _redispatch(uow: UnitOfWork, ids: list[int]) -> None:
    """Handed-back tasks run again at once (rare: through the ORM, after the batch's writes)."""
    now = utcnow()
    for task in uow.session.scalars(select(Task).where(Task.id.in_(ids))):
        dispatch(uow, task, now)
        announce_status(uow, task, "handed back by its worker")


# --------------------------------------------------------------------------- heartbeats, leases


def apply_heartbeats(policy: ExecutionPolicy) -> Callable[[UnitOfWork, Sequence[Envelope]], None]:
    """Worker presence and lease renewal, on a queue and consumer of their own: a backlog of
    reports never delays a renewal (so it never revokes a healthy task)."""

    def handle(uow: UnitOfWork, envelopes: Sequence[Envelope]) -> None:
        latest: dict[str, catalog.WorkerHeartbeat] = {}
        for env in envelopes:
            beat = catalog.read(env.data, catalog.WorkerHeartbeat)
            latest[beat.worker_name] = beat  # the newest of each worker says it all
        now = utcnow()
        for beat in latest.values():
            _present(uow, beat, now)
            _renew(uow, beat, now + policy.lease)
            revoke_what_should_not_run(uow, beat.worker_name, beat.active_tasks)

    return handle


def _present(uow: UnitOfWork, beat: catalog.WorkerHeartbeat, now: datetime) -> None:
    presence = uow.session.get(WorkerPresence, beat.worker_name)
    served = sorted(str(t.get("name")) for t in beat.task_types)
    if presence is None or sorted(str(t.get("name")) for t in presence.task_types or []) != served:
        uow.wake(DUE_SIGNAL)  # new types may be served: tasks waiting for them can go
    presence = presence or WorkerPresence(worker_name=beat.worker_name)
    presence.queues = list(beat.queues)
    presence.task_types = list(beat.task_types)
    presence.active_task_ids = list(beat.active_task_ids)
    if presence.last_seen is None or presence.last_seen < now - timedelta(seconds=60):
        uow.wake(DUE_SIGNAL)  # a worker back after a while
    presence.last_seen = now
    uow.session.add(presence)


def _renew(uow: UnitOfWork, beat: catalog.WorkerHeartbeat, expires_at: datetime) -> None:
    """A lease for every attempt the worker says it runs: renewed, or taken if the worker's
    report of its start is still on its way (only a lease of a newer attempt is kept)."""
    if not beat.active_tasks:
        return
    newest: dict[int, int] = {}  # one row per task (a revoked copy may run beside a newer attempt)
    for active in beat.active_tasks:
        newest[active.id] = max(active.attempt, newest.get(active.id, 0))
    rows = [
        {"task_pk": pk, "attempt": newest[pk], "worker_name": beat.worker_name, "expires_at": expires_at}
        for pk in sorted(newest)
    ]
    _write_leases(uow.session, rows, newer_only=True)
    uow.wake(LEASE_SIGNAL)


def _write_leases(session: Session, rows: list[dict[str, Any]], *, newer_only: bool = False) -> None:
    """Insert or replace the leases of `rows` (in key order: two transactions locking the same
    leases never wait on each other in a cycle); `newer_only` keeps a lease of a newer attempt."""
    insert = upsert(session.get_bind(), LEASES)  # an executemany: compiled once, not per batch
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[LEASES.c.task_pk],
            set_={
                "attempt": insert.excluded.attempt,
                "worker_name": insert.excluded.worker_name,
                "expires_at": insert.excluded.expires_at,
            },
            where=LEASES.c.attempt <= insert.excluded.attempt if newer_only else None,
        ),
        rows,
    )


def revoke_what_should_not_run(uow: UnitOfWork, worker: str, active: Iterable[catalog.ActiveAttempt]) -> None:
    """A worker still running an attempt that core no longer wants (cancelled, paused, finished,
    deleted, or superseded by a newer attempt) missed its revocation (say, during a broker
    restart): repeat it."""
    attempts = {a.id: a.attempt for a in active}
    if not attempts:
        return
    tasks = {t.id: t for t in uow.session.scalars(select(Task).where(Task.id.in_(list(attempts))))}
    for pk, attempt in attempts.items():
        task = tasks.get(pk)
        if task is None:
            continue  # deleted: task.deleted told the workers
        superseded = attempt < task.attempt or (
            task.status == st.RUNNING and task.worker_name not in (None, worker)
        )
        if (
            superseded
            or task.status in (st.CANCELLED, st.PAUSED)
            or (task.status in st.FINAL and attempt == task.attempt and task.worker_name != worker)
        ):
            revoke(uow, task, attempt, worker)


def on_worker_offline(policy: ExecutionPolicy) -> Callable[[UnitOfWork, Envelope], None]:
    def handle(uow: UnitOfWork, env: Envelope) -> None:
        name = catalog.read(env.data, catalog.WorkerOffline).worker_name
        tasks = uow.session.scalars(
            select(Task).where(Task.worker_name == name, Task.status == st.RUNNING).with_for_update()
        ).all()
        for task in tasks:
            recover_lost(uow, task, policy, f"worker {name} went offline")

    return handle


def recover_lost(uow: UnitOfWork, task: Task, policy: ExecutionPolicy, reason: str) -> None:
    """Nobody runs this task any more: run it again, or park it after too many lost deliveries
    (a task that kills its worker every time must not loop)."""
    # a worker that is only slow or cut off (not dead) must stop the attempt it may still run
    revoke(uow, task, task.attempt, task.worker_name)
    task.lost_deliveries += 1
    drop_lease(uow, task)
    if task.lost_deliveries >= policy.max_lost_deliveries:
        dead_letter(uow, task, reason)
        return
    now = utcnow()
    transition(task, st.PENDING, reason, now)
    task.worker_name = None
    dispatch(uow, task, now)
    announce_status(uow, task, reason)


def dead_letter(uow: UnitOfWork, task: Task, reason: str) -> None:
    """Park a task that lost its worker too many times: failed, and its order in the dead work
    queue (counted, inspectable, never run again)."""
    now = utcnow()
    transition(task, st.FAILED, f"{reason}; dead-lettered after {task.lost_deliveries} lost deliveries", now)
    task.error_message = f"Worker lost {task.lost_deliveries} times while running this task; dead-lettered."
    task.completed_at = now
    uow.send_raw_work("dead", f"{task.task_id}:{task.attempt}:dead", _dead_letter_body(task))
    publish_task_event(
        uow,
        task,
        catalog.TaskFailed(
            id=task.id,
            task_id=task.task_id,
            attempt=task.attempt,
            worker_name=task.worker_name,
            task_type=task.task_type,
            priority=task.priority,
            retry_count=task.retry_count,
            max_retries=task.max_retries,
            created_at=_iso(task.created_at),
            started_at=_iso(task.started_at),
            completed_at=_iso(now),
            metrics=catalog.AttemptMetrics(task_type=task.task_type, priority=task.priority),
            error_message=task.error_message,
            will_retry=False,
            dead_lettered=True,
        ),
    )
    TASKS_DEAD_LETTERED.inc()


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


# --------------------------------------------------------------------------- timers with a due time


def dispatch_due(uow: UnitOfWork, live_types: Iterable[str], limit: int = 500) -> int:
    """Send tasks whose time has come (scheduled_for, retry delays) to their work queues, once a
    live worker serves their type (until then they wait here, not in the broker)."""
    now = utcnow()
    query = (
        select(Task)
        .where(
            Task.dispatch_due_at <= now,
            Task.status.in_((st.PENDING, st.RETRYING)),
            Task.task_type.in_(list(live_types)),
        )
        .order_by(Task.dispatch_due_at)
        .limit(limit)
    )
    if is_postgres(uow.session.get_bind()):
        query = query.with_for_update(skip_locked=True)
    tasks = uow.session.scalars(query).all()
    for task in tasks:
        dispatch(uow, task, now)
    return len(tasks)


def next_dispatch(uow: UnitOfWork, live_types: Iterable[str]) -> datetime | None:
    """When the next task becomes due (among the types a live worker serves)."""
    return uow.session.scalar(
        select(func.min(Task.dispatch_due_at)).where(
            Task.dispatch_due_at.is_not(None),
            Task.status.in_((st.PENDING, st.RETRYING)),
            Task.task_type.in_(list(live_types)),
        )
    )


def reap_expired_leases(uow: UnitOfWork, policy: ExecutionPolicy, limit: int = 200) -> int:
    """Tasks whose worker stopped renewing their lease are recovered; leases of attempts that
    are over (or of deleted tasks) are dropped."""
    now = utcnow()
    expired = uow.session.execute(
        select(LEASES.c.task_pk, LEASES.c.attempt).where(LEASES.c.expires_at < now).limit(limit)
    ).all()
    if not expired:
        return 0
    query = select(Task).where(Task.id.in_([pk for pk, _ in expired]), Task.status == st.RUNNING)
    if is_postgres(uow.session.get_bind()):
        query = query.with_for_update(skip_locked=True)
    attempts = dict(expired)
    recovered = 0
    for task in uow.session.scalars(query).all():
        if attempts.get(task.id) == task.attempt:
            recover_lost(uow, task, policy, f"lease of worker {task.worker_name} expired")
            recovered += 1
    uow.session.execute(delete(LEASES).where(LEASES.c.task_pk.in_(list(attempts)), LEASES.c.expires_at < now))
    return recovered


def next_lease_expiry(uow: UnitOfWork) -> datetime | None:
    return uow.session.scalar(select(func.min(LEASES.c.expires_at)))


def report_handlers(policy: ExecutionPolicy) -> dict[str, Any]:
    """One batch handler for every report type: a run of reports of any kinds is one batch."""
    handler = apply_reports(policy)
    return {report: handler for report in REPORTS}
