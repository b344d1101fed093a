"""A schedule's plan changed outside the scheduler (created, edited, toggled, its calendars
changed, run now): the service layer moves it to its next slot and tells the scheduler, which
otherwise sleeps until the slot it last knew of (scheduler.py). The wake-up reaches the scheduler
process at commit (a NOTIFY on PostgreSQL, an in-process signal in `make run`)."""

from __future__ import annotations

from datetime import datetime

from shared.unit_of_work import UnitOfWork

from .firing import Schedule, reschedule

# the scheduler's wake-up: schedules changed, or a run waiting to be cancelled learnt its task
SCHEDULES = "schedules"


def replan(uow: UnitOfWork, schedule: Schedule, now: datetime) -> None:
    """Put the schedule on its next slot from `now` and wake the scheduler after the commit."""
    reschedule(uow, schedule, now)
    uow.wake(SCHEDULES)
