"""Workers: registered and kept current by their heartbeats (no manual step), online while their
last heartbeat is younger than the allowance, and announced offline (worker.offline, with the
task ids they held) when they fall silent, so that core runs those tasks again."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.errors import ApiError, field_error, not_found
from shared.events.envelope import Envelope, parse_iso, utcnow
from shared.unit_of_work import UnitOfWork

from ..models import Worker


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


def on_heartbeat(uow: UnitOfWork, env: Envelope) -> None:
    data, now = env.data, utcnow()
    name = str(data.get("worker_name") or "")[:200]
    if not name:
        return
    # the time the worker spoke, never in the future; a late heartbeat never moves it back
    beat = min(parse_iso(env.occurred_at) or now, now)
    worker = uow.session.scalars(select(Worker).where(Worker.worker_name == name).with_for_update()).first()
    if worker is None:
        worker = Worker(worker_name=name, created_at=now, processed_tasks=0, failed_tasks=0)
        uow.session.add(worker)
    elif worker.last_heartbeat is not None and worker.last_heartbeat > beat:
        return
    worker.brand_id = None  # a real worker: shared infrastructure, no brand's record any more
    set_queues(worker, list(data.get("queues") or []))
    worker.concurrency = int(_number(data.get("concurrency")) or 1)
    worker.cpu_percent = _number(data.get("cpu_percent"))
    worker.memory_percent = _number(data.get("memory_percent"))
    worker.load_average = _number(data.get("load_average"))
    worker.active_task_list = [t for t in data.get("active_tasks") or [] if isinstance(t, dict)]
    worker.active_tasks = len(worker.active_task_list or data.get("active_task_ids") or [])
    worker.processed_tasks = int(_number(data.get("processed_tasks")))
    worker.failed_tasks = int(_number(data.get("failed_tasks")))
    worker.started_at = parse_iso(data.get("started_at")) or worker.started_at
    worker.last_heartbeat = beat
    worker.is_online = True
    worker.updated_at = now


def mark_silent_offline(uow: UnitOfWork, offline_seconds: float) -> int:
    """Workers whose heartbeats stopped: offline, and announced once."""
    now = utcnow()
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
        uow.emit("worker.offline", None, {"worker_name": worker.worker_name, "task_ids": task_ids})
    return len(silent)


def visible_to(brand_id: int) -> ColumnElement[bool]:
    """The shared workers, and the brand's own manual records (never another brand's)."""
    return or_(Worker.brand_id.is_(None), Worker.brand_id == brand_id)


def get_worker(session: Session, pk: int, brand_id: int, *, lock: bool = False) -> Worker:
    stmt = select(Worker).where(Worker.id == pk, visible_to(brand_id))
    worker = session.scalars(stmt.with_for_update() if lock else stmt).first()
    if worker is None:
        raise not_found("NOT_FOUND", "Worker")
    return worker


def _own_record(uow: UnitOfWork, pk: int, brand_id: int) -> Worker:
    worker = get_worker(uow.session, pk, brand_id, lock=True)
    if worker.brand_id is None:
        raise ApiError(
            403,
            "PERMISSION_DENIED",
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
    try:
        uow.session.flush()
    except IntegrityError:
        raise field_error("worker_name", "A worker with this name already exists.") from None
    return worker


def create_worker(uow: UnitOfWork, brand_id: int, fields: dict[str, Any]) -> Worker:
    """A manual record of the caller's brand (a heartbeat of that name makes it live and shared)."""
    if uow.session.scalars(select(Worker.id).where(Worker.worker_name == fields["worker_name"])).first():
        raise field_error("worker_name", "A worker with this name already exists.")
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
