"""How runs are shown, for periodic tasks and cron jobs alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import marshmallow as ma
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.api import ReadSchema, Timestamp
from shared.listing import apply_ordering, paginate

from .models import ScheduleRun


def _seconds(later: Any, earlier: Any) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 3)


class RunSchema(ReadSchema):
    """One fired slot: planned time, fire time, created task, outcome, duration."""

    id = ma.fields.Integer()
    planned_time = Timestamp()
    fired_at = Timestamp()
    trigger = ma.fields.String()
    status = ma.fields.String()
    task = ma.fields.Integer(attribute="task_pk", allow_none=True)
    task_id = ma.fields.String(attribute="task_ref", allow_none=True)
    started_at = Timestamp(allow_none=True)
    finished_at = Timestamp(allow_none=True)
    duration_seconds = ma.fields.Function(lambda r: _seconds(r.finished_at, r.started_at))
    start_delay_seconds = ma.fields.Function(lambda r: _seconds(r.started_at, r.planned_time))
    overlapped = ma.fields.Boolean()
    idempotency_key = ma.fields.String()
    note = ma.fields.String()


RUN_ORDERING = {"planned_time": ScheduleRun.planned_time, "fired_at": ScheduleRun.fired_at}


def run_history(
    session: Session, load: Callable[..., Any], brand_id: int, schedule_id: int, args: dict[str, Any]
) -> dict[str, Any]:
    """A page of a schedule's runs; `load` (the schedule kind's getter) answers NotFound unless
    the brand has the schedule."""
    schedule = load(session, brand_id, schedule_id)
    stmt = select(ScheduleRun).where(
        ScheduleRun.schedule_kind == schedule.kind,
        ScheduleRun.schedule_id == schedule_id,
        ScheduleRun.brand_id == brand_id,
    )
    if args.get("status"):
        stmt = stmt.where(ScheduleRun.status.in_(args["status"]))
    stmt = apply_ordering(stmt, args.get("ordering"), RUN_ORDERING, [("planned_time", True)], ScheduleRun.id)
    return paginate(session, stmt, args)
