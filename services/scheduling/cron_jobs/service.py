"""Cron jobs' use cases: named chores on a frequency preset or a custom expression, fired by
the scheduler exactly like periodic tasks (firing.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.auth import Principal
from shared.core_client import Caller
from shared.crud import flush_unique, get_owned, name_taken, new_row, update_fields
from shared.domain_errors import InvalidField
from shared.unit_of_work import UnitOfWork

from ..container import SchedulingContainer
from ..cron import check_cron
from ..firing import FREQUENCY_CHOICES
from ..models import CRON_JOB, SCHEDULE_DEFAULTS, CronJob
from ..periodic_tasks.service import forget_runs, run_now
from ..planning import replan
from ..zones import check_zone


def get_cron_job(session: Session, brand_id: int, pk: int, *, lock: bool = False) -> CronJob:
    return get_owned(session, CronJob, brand_id, pk, "Cron job", lock=lock)


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


NAME_TAKEN = "A cron job with this name already exists."


def create_cron_job(
    container: SchedulingContainer, uow: UnitOfWork, principal: Principal, fields: dict[str, Any]
) -> CronJob:
    now = container.now()
    _check(fields, fields["frequency"], fields.get("custom_cron"))
    if name_taken(uow.session, CronJob, principal.brand_id, fields["name"], None):
        raise InvalidField("name", NAME_TAKEN)
    job = CronJob(
        **new_row(principal, now),
        **SCHEDULE_DEFAULTS,
        task_config={},
        successful_executions=0,
        failed_executions=0,
    )
    update_fields(job, fields, now)
    uow.session.add(job)
    flush_unique(uow, "name", NAME_TAKEN)
    replan(uow, job, now)
    return job


def update_cron_job(
    container: SchedulingContainer, uow: UnitOfWork, brand_id: int, pk: int, fields: dict[str, Any]
) -> CronJob:
    job = get_cron_job(uow.session, brand_id, pk, lock=True)
    frequency = fields.get("frequency", job.frequency)
    custom = fields.get("custom_cron", job.custom_cron if frequency == "custom" else None)
    _check(fields, frequency, custom)
    if "name" in fields and name_taken(uow.session, CronJob, brand_id, fields["name"], job.id):
        raise InvalidField("name", NAME_TAKEN)
    update_fields(job, fields, container.now())
    if frequency != "custom":
        job.custom_cron = None
    flush_unique(uow, "name", NAME_TAKEN)
    replan(uow, job, job.updated_at)
    return job


def delete_cron_job(uow: UnitOfWork, brand_id: int, pk: int) -> None:
    uow.session.delete(get_cron_job(uow.session, brand_id, pk, lock=True))
    forget_runs(uow, CRON_JOB, pk)


def execute(container: SchedulingContainer, principal: Principal, pk: int, caller: Caller) -> dict[str, Any]:
    return run_now(container, principal, get_cron_job, pk, caller, "cron_job_id")
