"""Periodic tasks' use cases. Each owns its transaction; firing goes through firing.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, selectinload

from shared.auth import Principal
from shared.core_client import Caller, CoreUnavailable
from shared.crud import created_by, get_owned, new_row, update_fields
from shared.domain_errors import InvalidField, Unavailable
from shared.events.envelope import iso
from shared.unit_of_work import UnitOfWork

from ..container import SchedulingContainer
from ..cron import check_cron
from ..firing import fire_due, fire_manual
from ..models import (
    PERIODIC,
    SCHEDULE_DEFAULTS,
    Calendar,
    CalendarAttachment,
    PeriodicTask,
    ScheduleRun,
)
from ..planning import SCHEDULES, replan
from ..zones import check_zone

log = logging.getLogger(__name__)

# how many due schedules one execute-ready call fires (each answers with core's task)
EXECUTE_READY_LIMIT = 100
# what a periodic task copies from its `base_task`
TEMPLATE_FIELDS = ("task_type", "priority", "description", "context_data", "max_retries", "timeout_minutes")


def get_periodic_task(session: Session, brand_id: int, pk: int, *, lock: bool = False) -> PeriodicTask:
    attachments = selectinload(PeriodicTask.attachments)
    return get_owned(session, PeriodicTask, brand_id, pk, "Periodic task", lock=lock, options=[attachments])


def template_of(container: SchedulingContainer, brand_id: int, pk: int, caller: Caller) -> dict[str, Any]:
    """A core task used as a template, asked of core with the caller's own credentials: a rare
    call, which spares scheduling a copy of every task core makes (it hears of periodic tasks
    only)."""
    try:
        task = container.core.get_task(caller, pk)
    except CoreUnavailable:
        raise Unavailable("core is unavailable; try again shortly.") from None
    if task is None or task.get("brand", {}).get("id") != brand_id:
        raise InvalidField("base_task", "Task not found or access denied.")
    return {k: task.get(k) for k in TEMPLATE_FIELDS}


def _check(fields: dict[str, Any], current: PeriodicTask | None, now: datetime) -> None:
    if "cron_expression" in fields:
        fields["cron_expression"] = " ".join(str(fields["cron_expression"]).split())
        check_cron(fields["cron_expression"])
    if "timezone" in fields:
        check_zone(fields["timezone"])
    start = fields.get("start_date", current.start_date if current else None)
    end = fields.get("end_date", current.end_date if current else None)
    if fields.get("end_date") is not None and fields["end_date"] <= now:
        raise InvalidField("end_date", "end_date must be in the future.", "SCHEDULE_IN_PAST")
    if start is not None and end is not None and end <= start:
        raise InvalidField("end_date", "end_date must be after start_date.")


def _set_calendars(uow: UnitOfWork, task: PeriodicTask, calendar_ids: list[int]) -> None:
    wanted = list(dict.fromkeys(calendar_ids))
    found = set(
        uow.session.scalars(
            select(Calendar.id).where(Calendar.id.in_(wanted), Calendar.brand_id == task.brand_id)
        )
    )
    missing = [c for c in wanted if c not in found]
    if missing:
        raise InvalidField("calendars", f"Calendar(s) not found or access denied: {missing}.")
    kept = [a for a in task.attachments if a.calendar_id in found]
    have = {a.calendar_id for a in kept}
    task.attachments[:] = kept + [CalendarAttachment(calendar_id=c) for c in wanted if c not in have]


def create_periodic_task(
    container: SchedulingContainer,
    uow: UnitOfWork,
    principal: Principal,
    fields: dict[str, Any],
    caller: Caller,
) -> PeriodicTask:
    now = container.now()
    fields = dict(fields)
    _check(fields, None, now)
    base_task = fields.pop("base_task", None)
    template: dict[str, Any] = {}
    if base_task is not None:
        template = template_of(container, principal.brand_id, base_task, caller)
    elif not fields.get("task_type"):
        raise InvalidField("task_type", "Give a task_type, or a base_task to copy it from.")
    calendars = fields.pop("calendars", [])
    values = {k: v for k, v in template.items() if v is not None}
    values.update({k: v for k, v in fields.items() if v is not None or k not in TEMPLATE_FIELDS})
    task = PeriodicTask(
        **new_row(principal, now),
        **SCHEDULE_DEFAULTS,
        base_task=base_task,
        context_data={},
        schedule_config={},
    )
    for key, value in values.items():
        setattr(task, key, value)
    uow.session.add(task)
    uow.session.flush()
    _set_calendars(uow, task, calendars)
    uow.session.flush()
    replan(uow, task, now)
    return task


def update_periodic_task(
    container: SchedulingContainer, uow: UnitOfWork, brand_id: int, pk: int, fields: dict[str, Any]
) -> PeriodicTask:
    task = get_periodic_task(uow.session, brand_id, pk, lock=True)
    now = container.now()
    fields = dict(fields)
    _check(fields, task, now)
    if "calendars" in fields:
        _set_calendars(uow, task, fields.pop("calendars"))
    update_fields(task, fields, now)
    uow.session.flush()
    replan(uow, task, now)
    return task


def delete_periodic_task(uow: UnitOfWork, brand_id: int, pk: int) -> None:
    uow.session.delete(get_periodic_task(uow.session, brand_id, pk, lock=True))
    forget_runs(uow, PERIODIC, pk)


def forget_runs(uow: UnitOfWork, kind: str, schedule_id: int) -> None:
    uow.session.execute(
        delete(ScheduleRun).where(ScheduleRun.schedule_kind == kind, ScheduleRun.schedule_id == schedule_id)
    )


def toggle(container: SchedulingContainer, uow: UnitOfWork, brand_id: int, pk: int) -> PeriodicTask:
    task = get_periodic_task(uow.session, brand_id, pk, lock=True)
    now = container.now()
    task.is_active = not task.is_active
    task.updated_at = now
    replan(uow, task, now)
    return task


def core_body(request: dict[str, Any]) -> dict[str, Any]:
    keys = ("task_type", "priority", "description", "context_data", "max_retries", "timeout_minutes")
    return {k: request[k] for k in keys if request.get(k) is not None}


def deliver_to_core(
    container: SchedulingContainer, run: ScheduleRun, request: dict[str, Any], caller: Caller
) -> dict[str, Any] | None:
    """Ask core for the run's task now, with the run's key (the event carries the same key, so
    core creates one task whichever comes first). Links the run to it. None if core is down:
    the outbox event still creates the task."""
    origin = {
        "periodic_task_id": run.schedule_id if run.schedule_kind == PERIODIC else None,
        "cron_job_id": run.schedule_id if run.schedule_kind != PERIODIC else None,
        "planned_time": iso(run.planned_time),
    }
    try:
        token = container.origin_token(run.brand_id, run.idempotency_key, origin)
        task = container.core.create_task(caller, run.idempotency_key, core_body(request), token)
    except CoreUnavailable as error:
        log.warning("core did not answer for run %s: %s", run.idempotency_key, error)
        return None
    with container.uow() as uow:
        uow.session.execute(
            update(ScheduleRun)
            .where(ScheduleRun.idempotency_key == run.idempotency_key, ScheduleRun.task_pk.is_(None))
            .values(task_pk=task.get("id"), task_ref=task.get("task_id"))
        )
        uow.commit()
    return task


def run_now(
    container: SchedulingContainer,
    principal: Principal,
    load: Callable[..., Any],
    pk: int,
    caller: Caller,
    id_field: str,
) -> dict[str, Any]:
    """Fire one manual run of a schedule (its own slot key, the schedule does not move) and answer
    with the task core created for it (execute-now of periodic tasks, execute of cron jobs)."""
    with container.uow() as uow:
        schedule = load(uow.session, principal.brand_id, pk, lock=True)
        run, request = fire_manual(uow, schedule, container.now(), created_by(principal))
        uow.wake(SCHEDULES)  # its executions count changed (max_executions)
        uow.commit()
    created = deliver_to_core(container, run, request, caller)
    return {
        "message": "Run started." if created else "Run fired; core will create its task from the event.",
        id_field: pk,
        "run_id": run.id,
        "idempotency_key": run.idempotency_key,
        "task": created,
    }


def execute_now(
    container: SchedulingContainer, principal: Principal, pk: int, caller: Caller
) -> dict[str, Any]:
    return run_now(container, principal, get_periodic_task, pk, caller, "periodic_task_id")


def ready_for_execution(container: SchedulingContainer, brand_id: int) -> dict[str, Any]:
    with container.session_factory() as session:
        tasks = list(
            session.scalars(
                select(PeriodicTask)
                .where(
                    PeriodicTask.brand_id == brand_id,
                    PeriodicTask.is_active.is_(True),
                    PeriodicTask.next_run_at <= container.now(),
                )
                .order_by(PeriodicTask.next_run_at, PeriodicTask.id)
                .limit(1000)
                .options(selectinload(PeriodicTask.attachments))
            )
        )
    return {"count": len(tasks), "tasks": tasks}


def execute_ready(container: SchedulingContainer, principal: Principal, caller: Caller) -> dict[str, Any]:
    """Fire the caller's due schedules now, exactly as the scheduler would (the same claim and
    the same slot keys, so a slot the scheduler already fired is not fired again)."""
    with container.uow() as uow:
        batch = fire_due(
            uow,
            PeriodicTask,
            container.now(),
            container.policy,
            brand_id=principal.brand_id,
            trigger="execute_ready",
            limit=EXECUTE_READY_LIMIT,
        )
        uow.commit()
    executed, failed = [], []
    for run in batch.runs:
        task = deliver_to_core(container, run, batch.requests[run.idempotency_key], caller)
        if task is None:
            failed.append(
                {
                    "periodic_task_id": run.schedule_id,
                    "idempotency_key": run.idempotency_key,
                    "error": "core did not answer; the task will be created from the schedule.fired event",
                }
            )
        else:
            executed.append(
                {
                    "periodic_task_id": run.schedule_id,
                    "execution_task_id": task.get("id"),
                    "executed_at": iso(run.fired_at),
                }
            )
    return {"executed": executed, "failed": failed, "total": len(executed) + len(failed)}
