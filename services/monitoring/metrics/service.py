"""Metrics records: written from the workers' task.completed / task.failed (one record per task,
a later attempt updates it) and by the API. Each new or changed record is announced with
metrics.recorded (core shows has_metrics and the summary from it) in the same transaction, and
each new measurement is checked against the brand's alert rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.auth import Principal
from shared.errors import field_error, not_found
from shared.events.envelope import Envelope, parse_iso, utcnow
from shared.unit_of_work import UnitOfWork

from .. import read_model
from ..alerts import service as alerts
from ..models import MetricsRecord, TaskView
from . import rollup
from .fields import MEASURED, reported_value
from .scoring import performance_score


def get_record(session: Session, brand_id: int, pk: int, *, lock: bool = False) -> MetricsRecord:
    stmt = select(MetricsRecord).where(MetricsRecord.id == pk, MetricsRecord.brand_id == brand_id)
    record = session.scalars(stmt.with_for_update() if lock else stmt).first()
    if record is None:
        raise not_found("NOT_FOUND", "Metrics record")
    return record


def _rescore(record: MetricsRecord) -> None:
    record.performance_score = performance_score(
        execution_time_ms=record.execution_time_ms,
        queue_wait_time_ms=record.queue_wait_time_ms,
        memory_usage_mb=record.memory_usage_mb,
        error_count=record.error_count,
        retry_count=record.retry_count,
        succeeded=record.succeeded,
    )


def _announce(uow: UnitOfWork, record: MetricsRecord) -> None:
    data: dict[str, Any] = {"base_task": record.base_task, "task_id": record.task_id}
    data.update({name: getattr(record, name) for name in MEASURED})
    data.update(performance_score=record.performance_score, worker_name=record.worker_name)
    uow.emit("metrics.recorded", record.brand_id, data)


def _new_record(view: TaskView, measured_at: datetime | None = None) -> MetricsRecord:
    now = utcnow()
    record = MetricsRecord(
        brand_id=view.brand_id,
        base_task=view.id,
        task_id=view.task_id,
        task_type=view.task_type,
        priority=view.priority,
        attempt=0,
        created_at=measured_at or now,
        updated_at=now,
    )
    for name in MEASURED:
        setattr(record, name, 0)
    return record


def record_attempt(uow: UnitOfWork, env: Envelope) -> None:
    """task.completed / task.failed: the attempt's figures, as the worker measured them."""
    view = read_model.on_finished(uow, env)
    if view is None:
        return
    attempt = int(env.data.get("attempt") or 0)
    record = uow.session.scalars(
        select(MetricsRecord).where(MetricsRecord.base_task == view.id).with_for_update()
    ).first()
    if record is not None and record.attempt > attempt:
        return  # a late report of an older attempt
    reported: dict[str, Any] = env.data.get("metrics") or {}
    if not view.task_type and isinstance(reported.get("task_type"), str):
        # the worker's report overtook core's task.created: it names the type and priority too
        view.task_type = reported["task_type"][:100]
        view.priority = str(reported.get("priority") or view.priority)[:10]
    if record is None:
        # dated when the attempt ended (the report's time), even if the report arrives late
        record = _new_record(view, min(parse_iso(env.occurred_at) or utcnow(), utcnow()))
        uow.session.add(record)
    else:
        rollup.remove(uow.session, record)
        record.task_type, record.priority = view.task_type, view.priority
    for name in MEASURED:
        value = reported_value(name, reported.get(name))
        setattr(record, name, value if value is not None else 0)
    record.retry_count = _first_int(
        reported.get("retry_count"), env.data.get("retry_count"), view.retry_count
    )
    if reported_value("queue_wait_time_ms", reported.get("queue_wait_time_ms")) is None:
        record.queue_wait_time_ms = _queue_wait_ms(view, attempt)
    record.worker_name = env.data.get("worker_name") or view.worker_name
    record.succeeded = env.event_type == "task.completed"
    record.attempt = attempt
    record.updated_at = utcnow()
    _rescore(record)
    uow.session.flush()
    rollup.add(uow.session, record)
    _announce(uow, record)
    alerts.evaluate(uow, record)


def _queue_wait_ms(view: TaskView, attempt: int) -> float:
    """When the worker did not measure it: from creation to start, known for a first attempt only."""
    if attempt > 1 or view.started_at is None or view.created_at is None:
        return 0.0
    wait = (view.started_at - view.created_at).total_seconds() * 1000
    return float(reported_value("queue_wait_time_ms", wait) or 0.0)


def _first_int(*candidates: Any) -> int:
    for value in candidates:
        clean = reported_value("retry_count", value)
        if clean is not None:
            return int(clean)
    return 0


def create_record(uow: UnitOfWork, principal: Principal, fields: dict[str, Any]) -> MetricsRecord:
    # one answer for unknown and other-brand tasks: existence must not leak
    view = uow.session.get(TaskView, fields["base_task"])
    if view is None or view.brand_id != principal.brand_id or view.status == read_model.DELETED:
        raise field_error("base_task", "No task of this brand has this id.")
    if uow.session.scalars(select(MetricsRecord.id).where(MetricsRecord.base_task == view.id)).first():
        raise field_error("base_task", "This task already has a metrics record; update it instead.")
    record = _new_record(view)
    record.succeeded = view.status != "failed" and not fields.get("error_count")
    record.worker_name = fields.get("worker_name") or view.worker_name
    for name in MEASURED:
        if name in fields:
            setattr(record, name, fields[name])
    _rescore(record)
    uow.session.add(record)
    uow.session.flush()
    rollup.add(uow.session, record)
    _announce(uow, record)
    alerts.evaluate(uow, record)
    return record


def update_record(uow: UnitOfWork, brand_id: int, pk: int, fields: dict[str, Any]) -> MetricsRecord:
    """A correction of the figures: announced, but not an alertable new measurement."""
    record = get_record(uow.session, brand_id, pk, lock=True)
    changed = {k: v for k, v in fields.items() if getattr(record, k) != v}
    if changed:
        rollup.remove(uow.session, record)
        for name, value in changed.items():
            setattr(record, name, value)
        record.updated_at = utcnow()
        _rescore(record)
        rollup.add(uow.session, record)
        _announce(uow, record)
    return record


def delete_record(uow: UnitOfWork, brand_id: int, pk: int) -> None:
    _drop(uow, get_record(uow.session, brand_id, pk, lock=True))


def _drop(uow: UnitOfWork, record: MetricsRecord) -> None:
    rollup.remove(uow.session, record)
    uow.emit("metrics.deleted", record.brand_id, {"base_task": record.base_task, "task_id": record.task_id})
    uow.session.delete(record)


def on_task_deleted(uow: UnitOfWork, env: Envelope) -> None:
    view = read_model.forget(uow, env)
    if view is None:
        return
    record = uow.session.scalars(
        select(MetricsRecord).where(MetricsRecord.base_task == view.id).with_for_update()
    ).first()
    if record is not None:
        _drop(uow, record)
