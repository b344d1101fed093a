"""Metrics records through the API: create, correct, delete. Records of worker-reported figures
are written from core's outcome events (metrics/measurements.py). A record created or changed
here is announced with metrics.recorded (core shows has_metrics and the summary from it) in the
same transaction; a new one is checked against the brand's alert rules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import task_states as st
from shared.auth import Principal
from shared.crud import get_owned
from shared.domain_errors import InvalidField
from shared.events.catalog import MetricsDeleted, MetricsRecorded
from shared.events.envelope import utcnow
from shared.unit_of_work import UnitOfWork

from .. import read_model
from ..alerts import service as alerts
from ..models import MetricsRecord, TaskView
from . import rollup
from .fields import MEASURED
from .rollup import values_of
from .scoring import score_of


def get_record(session: Session, brand_id: int, pk: int, *, lock: bool = False) -> MetricsRecord:
    return get_owned(session, MetricsRecord, brand_id, pk, "Metrics record", lock=lock)


def _announce(uow: UnitOfWork, record: MetricsRecord) -> None:
    # every figure of the record: MetricsRecorded names those core reads, outside consumers
    # may read the others
    measured = {name: getattr(record, name) for name in MEASURED}
    event = MetricsRecorded(
        base_task=record.base_task,
        task_id=record.task_id,
        performance_score=record.performance_score,
        worker_name=record.worker_name,
        **measured,
    )
    uow.publish(event, record.brand_id)


def create_record(uow: UnitOfWork, principal: Principal, fields: dict[str, Any]) -> MetricsRecord:
    # one answer for unknown and other-brand tasks: existence must not leak
    view = uow.session.get(TaskView, fields["base_task"], with_for_update=True)
    if view is None or view.brand_id != principal.brand_id or view.status == read_model.DELETED:
        raise InvalidField("base_task", "No task of this brand has this id.")
    if uow.session.scalars(select(MetricsRecord.id).where(MetricsRecord.base_task == view.id)).first():
        raise InvalidField("base_task", "This task already has a metrics record; update it instead.")
    now = utcnow()
    record = MetricsRecord(
        brand_id=view.brand_id,
        base_task=view.id,
        task_id=view.task_id,
        task_type=view.task_type,
        priority=view.priority,
        attempt=0,
        created_at=now,
        updated_at=now,
        succeeded=view.status != st.FAILED and not fields.get("error_count"),
        worker_name=fields.get("worker_name") or view.worker_name,
        **{name: fields.get(name, 0) for name in MEASURED},
    )
    record.performance_score = score_of(values_of(record))
    uow.session.add(record)
    uow.session.flush()
    rollup.change(uow.session, None, values_of(record))
    _announce(uow, record)
    alerts.evaluate(uow, [values_of(record)])
    return record


def update_record(uow: UnitOfWork, brand_id: int, pk: int, fields: dict[str, Any]) -> MetricsRecord:
    """A correction of the figures: announced, but not an alertable new measurement."""
    record = get_record(uow.session, brand_id, pk, lock=True)
    changed = {k: v for k, v in fields.items() if getattr(record, k) != v}
    if changed:
        before = values_of(record)
        for name, value in changed.items():
            setattr(record, name, value)
        record.updated_at = utcnow()
        record.performance_score = score_of(values_of(record))
        rollup.change(uow.session, before, values_of(record))
        _announce(uow, record)
    return record


def delete_record(uow: UnitOfWork, brand_id: int, pk: int) -> None:
    record = get_record(uow.session, brand_id, pk, lock=True)
    rollup.change(uow.session, values_of(record), None)
    uow.publish(MetricsDeleted(base_task=record.base_task, task_id=record.task_id), record.brand_id)
    uow.session.delete(record)
