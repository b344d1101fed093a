"""Workers: registered and kept current by their heartbeats (no manual step), online while their
last heartbeat is younger than the allowance, and announced offline (worker.offline, with the
task ids they held) when they fall silent, so that core runs those tasks again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from shared.crud import flush_unique, get_where
from shared.db import upsert
from shared.domain_errors import Forbidden, InvalidField
from shared.events.catalog import WorkerHeartbeat, WorkerOffline, read, to_data
from shared.events.envelope import Envelope, parse_iso, utcnow
from shared.unit_of_work import UnitOfWork

from ..models import Worker

NAME_TAKEN = "A worker with this name already exists."
# the signal that wakes the worker watch (workers/watch.py)
WATCH_WAKEUP = "workers"


def online_clause(offline_seconds: float, now: datetime | None = None) -> ColumnElement[bool]:
    cutoff = (now or utcnow()) - timedelta(seconds=offline_seconds)
    return and_(Worker.is_online.is_(True), Worker.last_heartbeat >= cutoff)


def offline_clause(offline_seconds: float, now: datetime | None = None) -> ColumnElement[bool]:
    cutoff = (now or utcnow()) - timedelta(seconds=offline_seconds)
    return or_(Worker.is_online.is_(False), Worker.last_heartbeat.is_(None), Worker.last_heartbeat < cutoff)


def is_online(worker: Worker, offline_seconds: float, now: datetime | None = None) -> bool:
    cutoff = (now or utcnow()) - timedelta(seconds=offline_seconds)
    return bool(worker.is_online and worker.last_heartbeat and worker.last_heartbeat >= cutoff)


def set_queues(worker: Worker, queues: list[str]) -> None:
    worker.queues = [str(q) for q in queues]
    worker.queues_text = "," + ",".join(worker.queues) + ","


def _number(raw: Any) -> float:
    if isinstance(raw, list | tuple):  # load average as [1 min, 5 min, 15 min]
        raw = raw[0] if raw else 0
    return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else 0.0


def _row(name: str, beat: WorkerHeartbeat, at: datetime, now: datetime) -> dict[str, Any]:
    queues = [str(q) for q in beat.queues]
    return {
        "worker_name": name,
        "brand_id": None,  # a real worker: shared infrastructure, no brand's manual record any more
        "queues": queues,
        "queues_text": "," + ",".join(queues) + ",",
        "concurrency": beat.concurrency or 1,
        "is_online": True,
        "cpu_percent": _number(beat.cpu_percent),
        "memory_percent": _number(beat.memory_percent),
        "load_average": _number(beat.load_average),
        "active_tasks": len(beat.active_tasks or beat.active_task_ids),
        "active_task_list": [to_data(task) for task in beat.active_tasks],
        "processed_tasks": beat.processed_tasks,
        "failed_tasks": beat.failed_tasks,
        "started_at": parse_iso(beat.started_at),
        "last_heartbeat": at,
        "created_at": now,
        "updated_at": now,
    }


def record_heartbeats(uow: UnitOfWork, envelopes: Sequence[Envelope]) -> None:
    """worker.heartbeat, a consumer batch at once: each worker's newest heartbeat of the batch,
    in one upsert. A heartbeat's time is when the worker spoke (never in the future); one older
    than the stored heartbeat (late) changes nothing. A heartbeat from a worker that was not
    online (new, or back from silence) wakes the worker watch: its next deadline may be earlier."""
    now = utcnow()
    newest: dict[str, tuple[datetime, WorkerHeartbeat]] = {}
    for env in envelopes:
        beat = read(env.data, WorkerHeartbeat)
        name, at = beat.worker_name[:200], min(parse_iso(env.occurred_at) or now, now)
        if name and (name not in newest or newest[name][0] <= at):
            newest[name] = (at, beat)
    if not newest:
        return
    # locked, so that a worker the watch is marking offline right now is seen offline
    online = {
        worker_name
        for worker_name, is_online in uow.session.execute(
            select(Worker.worker_name, Worker.is_online)
            .where(Worker.worker_name.in_(sorted(newest)))
            .order_by(Worker.worker_name)
            .with_for_update()
        )
        if is_online
    }
    rows = [_row(name, beat, at, now) for name, (at, beat) in sorted(newest.items())]
    statement = upsert(uow.session.get_bind(), Worker.__table__)  # an executemany: compiled once
    table, new = Worker.__table__.c, statement.excluded
    kept = {"id", "worker_name", "created_at"}
    changes = {name: new[name] for name in rows[0] if name not in kept}
    changes["started_at"] = func.coalesce(new.started_at, table.started_at)
    uow.session.execute(
        statement.on_conflict_do_update(
            index_elements=["worker_name"],
            set_=changes,
            where=or_(table.last_heartbeat.is_(None), table.last_heartbeat <= new.last_heartbeat),
        ),
        rows,
    )
    if set(newest) - online:
        uow.wake(WATCH_WAKEUP)


def mark_silent_offline(uow: UnitOfWork, offline_seconds: float, now: datetime) -> int:
    """Workers whose heartbeats stopped: offline, and announced once."""
    silent = uow.session.scalars(
        select(Worker)
        .where(Worker.is_online.is_(True), Worker.last_heartbeat < now - timedelta(seconds=offline_seconds))
        .with_for_update(skip_locked=True)
    ).all()
    for worker in silent:
        worker.is_online = False
        worker.updated_at = now
        task_ids = [str(t.get("task_id")) for t in worker.active_task_list if t.get("task_id")]
        # shared infrastructure: the event belongs to no brand
        uow.publish(WorkerOffline(worker_name=worker.worker_name, task_ids=task_ids), None)
    return len(silent)


def next_deadline(session: Session, offline_seconds: float) -> datetime | None:
    """The earliest moment an online worker could become silent (None: no worker is online)."""
    oldest = session.scalar(select(func.min(Worker.last_heartbeat)).where(Worker.is_online.is_(True)))
    return None if oldest is None else oldest + timedelta(seconds=offline_seconds)


def visible_to(brand_id: int) -> ColumnElement[bool]:
    """The shared workers, and the brand's own manual records (never another brand's)."""
    return or_(Worker.brand_id.is_(None), Worker.brand_id == brand_id)


def get_worker(session: Session, pk: int, brand_id: int, *, lock: bool = False) -> Worker:
    return get_where(session, Worker, "Worker", Worker.id == pk, visible_to(brand_id), lock=lock)


def _own_record(uow: UnitOfWork, pk: int, brand_id: int) -> Worker:
    worker = get_worker(uow.session, pk, brand_id, lock=True)
    if worker.brand_id is None:
        raise Forbidden(
            "This worker is shared infrastructure kept by its heartbeats; no brand can change it.",
        )
    return worker


def _apply(worker: Worker, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if name == "queues":
            set_queues(worker, value)
        else:
            setattr(worker, name, value)


def _save(uow: UnitOfWork, worker: Worker) -> Worker:
    uow.session.add(worker)
    flush_unique(uow, "worker_name", NAME_TAKEN)
    return worker


def create_worker(uow: UnitOfWork, brand_id: int, fields: dict[str, Any]) -> Worker:
    """A manual record of the caller's brand (a heartbeat of that name makes it live and shared)."""
    if uow.session.scalars(select(Worker.id).where(Worker.worker_name == fields["worker_name"])).first():
        raise InvalidField("worker_name", NAME_TAKEN)
    now = utcnow()
    worker = Worker(
        brand_id=brand_id,
        is_online=False,
        active_task_list=[],
        created_at=now,
        updated_at=now,
        queues_text=",",
    )
    _apply(worker, {"queues": [], **fields})
    return _save(uow, worker)


def update_worker(uow: UnitOfWork, brand_id: int, pk: int, fields: dict[str, Any]) -> Worker:
    worker = _own_record(uow, pk, brand_id)
    _apply(worker, fields)
    worker.updated_at = utcnow()
    return _save(uow, worker)


def delete_worker(uow: UnitOfWork, brand_id: int, pk: int) -> None:
    uow.session.delete(_own_record(uow, pk, brand_id))
