"""Job state use cases: handlers upsert it by job, operators read or edit it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.crud import get_owned, update_fields
from shared.domain_errors import InvalidField
from shared.events.envelope import utcnow
from shared.unit_of_work import UnitOfWork

from ..jobs.runs import job_in_brand
from ..models import JobState

DEFAULTS: dict[str, Any] = {
    "pages_status": {},
    "error_details": {},
    "retry_count": 0,
    "max_retries": 3,
    "last_error_message": None,
    "state_data": {},
}


def get_state(session: Session, brand_id: int, pk: int, *, lock: bool = False) -> JobState:
    return get_owned(session, JobState, brand_id, pk, "Job state", lock=lock)


def upsert_state(
    uow: UnitOfWork, brand_id: int, fields: dict[str, Any], only_task: int | None = None
) -> tuple[JobState, bool]:
    """The job's state, created on first write; later writes change only the fields given.
    The job row is locked first, so concurrent first writes of one job serialize."""
    job = job_in_brand(uow, brand_id, fields.pop("persistent_job"), "persistent_job")
    if only_task is not None and job.base_task_id != only_task:  # a worker's grant: its own job only
        raise InvalidField("persistent_job", "Unknown persistent job.")
    state = uow.session.scalars(select(JobState).where(JobState.job_id == job.id)).first()
    created = state is None
    now = utcnow()
    if state is None:
        state = JobState(brand_id=brand_id, job=job, created_at=now, **DEFAULTS)
        uow.session.add(state)
    update_fields(state, fields, now)
    return state, created


def update_state(uow: UnitOfWork, brand_id: int, pk: int, fields: dict[str, Any]) -> JobState:
    state = get_state(uow.session, brand_id, pk, lock=True)
    update_fields(state, fields, utcnow())
    return state
