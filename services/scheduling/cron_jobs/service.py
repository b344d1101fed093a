"""Cron jobs' use cases: named chores on a frequency preset or a custom expression, fired by
the scheduler exactly like periodic tasks (firing.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.auth import Principal
from shared.domain_errors import InvalidField, NotFound
from shared.unit_of_work import UnitOfWork

from ..container import SchedulingContainer
from ..core_client import Caller
from ..cron import check_cron
from ..firing import FREQUENCY_CHOICES
from ..models import CRON_JOB, CronJob
from ..periodic_tasks.service import forget_runs, run_now
from ..planning import replan
from ..zones import check_zone


def get_cron_job(session: Session, brand_id: int, pk: int, *, lock: bool = False) -> CronJob:
    stmt = select(CronJob).where(CronJob.id == pk, CronJob.brand_id == brand_id)
    job = session.scalars(stmt.with_for_update() if lock else stmt).first()
    if job is None:
        raise NotFound("Cron job")
    return job


def _check(fields: dict[str, Any], frequency: str, custom_cron: str | None) -> None:
    if frequency not in FREQUENCY_CHOICES:
        raise InvalidField(
            "frequency",
            f"{frequency!r} is not supported; use one of {', '.join(FREQUENCY_CHOICES)}.",
            "FREQUENCY_NOT_SUPPORTED",
        )
    if frequency == "custom":
        if not custom_cron:
            raise InvalidField("custom_cron", "custom_cron is required when frequency is custom.")
        check_cron(custom_cron, "custom_cron")
    elif fields.get("custom_cron"):
        raise InvalidField("custom_cron", "custom_cron is only used with frequency custom.")
    if "timezone" in fields:
        check_zone(fields["timezone"])


def _name_taken(uow: UnitOfWork, brand_id: int, name: str, own_id: int | None) -> bool:
    other = uow.session.scalars(
        select(CronJob.id).where(CronJob.brand_id == brand_id, CronJob.name == name)
    ).first()
    return other is not None and other != own_id


def _flush(uow: UnitOfWork) -> None:
    try:
        uow.session.flush()
    except IntegrityError:
        uow.rollback()
        raise InvalidField("name", "A cron job with this name already exists.") from None


def create_cron_job(
    container: SchedulingContainer, uow: UnitOfWork, principal: Principal, fields: dict[str, Any]
) -> CronJob:
    now = container.now()
    _check(fields, fields["frequency"], fields.get("custom_cron"))
    if _name_taken(uow, principal.brand_id, fields["name"], None):
        raise InvalidField("name", "A cron job with this name already exists.")
    job = CronJob(
        brand_id=principal.brand_id,
        brand_name=principal.brand_name,
        created_by_id=principal.user_id,
        created_by_username=principal.username,
        description="",
        timezone="UTC",
        is_active=True,
        task_config={},
        executions_count=0,
        successful_executions=0,
        failed_executions=0,
        missed_runs_count=0,
        misfire_policy="run_once",
        catchup_window_minutes=60,
        overlap_policy="allow",
        jitter_seconds=0,
        created_at=now,
        updated_at=now,
    )
    for key, value in fields.items():
        setattr(job, key, value)
    uow.session.add(job)
    _flush(uow)
    replan(uow, job, now)
    return job


def update_cron_job(
    container: SchedulingContainer, uow: UnitOfWork, brand_id: int, pk: int, fields: dict[str, Any]
) -> CronJob:
    job = get_cron_job(uow.session, brand_id, pk, lock=True)
    frequency = fields.get("frequency", job.frequency)
    custom = fields.get("custom_cron", job.custom_cron if frequency == "custom" else None)
    _check(fields, frequency, custom)
    if "name" in fields and _name_taken(uow, brand_id, fields["name"], job.id):
        raise InvalidField("name", "A cron job with this name already exists.")
    for key, value in fields.items():
        setattr(job, key, value)
    if frequency != "custom":
        job.custom_cron = None
    job.updated_at = container.now()
    _flush(uow)
    replan(uow, job, job.updated_at)
    return job


def delete_cron_job(uow: UnitOfWork, brand_id: int, pk: int) -> None:
    uow.session.delete(get_cron_job(uow.session, brand_id, pk, lock=True))
    forget_runs(uow, CRON_JOB, pk)


def execute(container: SchedulingContainer, principal: Principal, pk: int, caller: Caller) -> dict[str, Any]:
    return run_now(container, principal, get_cron_job, pk, caller, "cron_job_id")
