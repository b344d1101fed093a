"""Calendars' use cases: excluded dates, attached periodic tasks, and the events window."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from shared.crud import flush_unique, get_owned, name_taken, update_fields
from shared.domain_errors import InvalidField, NotFound
from shared.events.envelope import iso
from shared.unit_of_work import UnitOfWork

from ..container import SchedulingContainer
from ..cron import check_cron
from ..firing import cron_of, next_slot, plans_for
from ..models import Calendar, CalendarAttachment, PeriodicTask
from ..planning import replan
from ..zones import check_zone

MAX_WINDOW = timedelta(days=366)
MAX_EVENTS = 5000
DEFAULT_WINDOW = timedelta(days=7)


def get_calendar(session: Session, brand_id: int, pk: int, *, lock: bool = False) -> Calendar:
    attachments = selectinload(Calendar.attachments)
    return get_owned(session, Calendar, brand_id, pk, "Calendar", lock=lock, options=[attachments])


NAME_TAKEN = "A calendar with this name already exists."


def _replan(uow: UnitOfWork, ids: set[int], now: datetime) -> None:
    """Exclusions changed: move these schedules to their next allowed slot."""
    if not ids:
        return
    uow.session.flush()
    for task in uow.session.scalars(
        select(PeriodicTask)
        .where(PeriodicTask.id.in_(ids))
        .with_for_update()
        .options(selectinload(PeriodicTask.attachments))
    ):
        replan(uow, task, now)


def _attached(calendar: Calendar) -> set[int]:
    return {a.periodic_task_id for a in calendar.attachments}


def create_calendar(
    container: SchedulingContainer, uow: UnitOfWork, brand_id: int, fields: dict[str, Any]
) -> Calendar:
    if "default_timezone" in fields:
        check_zone(fields["default_timezone"], "default_timezone")
    if name_taken(uow.session, Calendar, brand_id, fields["name"], None):
        raise InvalidField("name", NAME_TAKEN)
    now = container.now()
    calendar = Calendar(
        brand_id=brand_id,
        description="",
        color="#3b82f6",
        is_active=True,
        default_timezone="UTC",
        excluded_dates=[],
        created_at=now,
        updated_at=now,
        attachments=[],
    )
    update_fields(calendar, fields, now)
    uow.session.add(calendar)
    flush_unique(uow, "name", NAME_TAKEN)
    return calendar


def update_calendar(
    container: SchedulingContainer, uow: UnitOfWork, brand_id: int, pk: int, fields: dict[str, Any]
) -> Calendar:
    calendar = get_calendar(uow.session, brand_id, pk, lock=True)
    if "default_timezone" in fields:
        check_zone(fields["default_timezone"], "default_timezone")
    if "name" in fields and name_taken(uow.session, Calendar, brand_id, fields["name"], calendar.id):
        raise InvalidField("name", NAME_TAKEN)
    update_fields(calendar, fields, container.now())
    flush_unique(uow, "name", NAME_TAKEN)
    _replan(uow, _attached(calendar), calendar.updated_at)
    return calendar


def delete_calendar(container: SchedulingContainer, uow: UnitOfWork, brand_id: int, pk: int) -> None:
    calendar = get_calendar(uow.session, brand_id, pk, lock=True)
    attached = _attached(calendar)
    uow.session.delete(calendar)
    _replan(uow, attached, container.now())


def attach(
    container: SchedulingContainer, uow: UnitOfWork, brand_id: int, pk: int, body: dict[str, Any]
) -> CalendarAttachment:
    calendar = get_calendar(uow.session, brand_id, pk, lock=True)
    task = uow.session.scalars(
        select(PeriodicTask).where(
            PeriodicTask.id == body["periodic_task"], PeriodicTask.brand_id == brand_id
        )
    ).first()
    if task is None:
        raise InvalidField("periodic_task", "Periodic task not found or access denied.")
    if any(a.periodic_task_id == task.id for a in calendar.attachments):
        raise InvalidField("periodic_task", "This periodic task is already in this calendar.")
    if body.get("custom_cron"):
        body["custom_cron"] = " ".join(body["custom_cron"].split())
        check_cron(body["custom_cron"], "custom_cron")
    attachment = CalendarAttachment(
        periodic_task_id=task.id,
        custom_cron=body.get("custom_cron"),
        custom_config=body.get("custom_config") or {},
    )
    calendar.attachments.append(attachment)
    calendar.updated_at = container.now()
    _replan(uow, _attached(calendar), calendar.updated_at)
    return attachment


def detach(container: SchedulingContainer, uow: UnitOfWork, brand_id: int, pk: int, task_id: int) -> None:
    calendar = get_calendar(uow.session, brand_id, pk, lock=True)
    attachment = next((a for a in calendar.attachments if a.periodic_task_id == task_id), None)
    if attachment is None:
        raise NotFound("Attached periodic task")
    calendar.attachments.remove(attachment)
    calendar.updated_at = container.now()
    _replan(uow, _attached(calendar) | {task_id}, calendar.updated_at)


def _bound(raw: str | None, name: str, default: datetime, end_of_day: bool = False) -> datetime:
    if raw is None:
        return default
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw) + (timedelta(days=1) if end_of_day else timedelta())
            return datetime.combine(day, time(0), tzinfo=UTC)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidField(name, "Give a date (YYYY-MM-DD) or an ISO 8601 date-time.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def events(
    container: SchedulingContainer, uow: UnitOfWork, brand_id: int, pk: int, args: dict[str, Any]
) -> dict:
    """The slots of the attached active schedules inside [start, end), honouring each
    schedule's time zone, start/end dates and every exclusion that applies to it."""
    calendar = get_calendar(uow.session, brand_id, pk)
    now = container.now()
    start = _bound(args.get("start"), "start", now)
    end = _bound(args.get("end"), "end", start + DEFAULT_WINDOW, end_of_day=True)
    if end <= start:
        raise InvalidField("end", "end must be after start.")
    if end - start > MAX_WINDOW:
        raise InvalidField("end", "The window is at most 366 days.")
    ids = [a.periodic_task_id for a in calendar.attachments]
    tasks = list(
        uow.session.scalars(
            select(PeriodicTask)
            .where(PeriodicTask.id.in_(ids), PeriodicTask.is_active.is_(True))
            .order_by(PeriodicTask.id)
        )
    )
    plans = plans_for(uow.session, tasks)
    found: list[dict[str, Any]] = []
    for task in tasks:
        plan = plans.get(task.id)
        cron_of(task, plan)  # validates the expression the schedule fires on
        moment = start - timedelta(microseconds=1)
        while True:
            slot = next_slot(task, moment, plan)
            if slot is None or slot >= end:
                break
            found.append(
                {
                    "periodic_task_id": task.id,
                    "task_type": task.task_type,
                    "description": task.description,
                    "scheduled_at": slot,
                }
            )
            if len(found) > MAX_EVENTS:
                raise InvalidField("end", f"The window holds more than {MAX_EVENTS} events; narrow it.")
            moment = slot
    found.sort(key=lambda e: (e["scheduled_at"], e["periodic_task_id"]))
    return {
        "calendar_id": calendar.id,
        "calendar_name": calendar.name,
        "period": {"start": iso(start), "end": iso(end)},
        "events": [{**e, "scheduled_at": iso(e["scheduled_at"])} for e in found],
        "total_events": len(found),
    }
