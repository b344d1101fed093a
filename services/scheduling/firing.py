"""Firing slots: the one place a schedule runs, used by the scheduler process, `execute-ready`,
`execute-now` and cron jobs' `execute`.

In ONE transaction the caller claims due schedules (`FOR UPDATE SKIP LOCKED` on PostgreSQL, in
`next_run_at` order, a batch at a time), and for each slot inserts a run whose
`idempotency_key` (`<kind>:<id>:<planned time>`) is unique, advances `next_run_at` and writes
`schedule.fired` to the outbox. core creates one task per key. So two scheduler replicas, or
the scheduler and `execute-ready`, fire a slot once, and a crash cannot separate the run from its
event (both commit or neither does).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db import is_postgres
from shared.events import catalog
from shared.events.envelope import iso
from shared.unit_of_work import UnitOfWork

from .cron import InvalidCron, next_fire, normalize
from .exclusions import Exclusions, excluded_until
from .models import CRON_JOB, PERIODIC, Calendar, CalendarAttachment, CronJob, PeriodicTask, ScheduleRun

log = logging.getLogger(__name__)

FREQUENCIES = {
    "minutely": "* * * * *",
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 0",
    "monthly": "0 0 1 * *",
}
FREQUENCY_CHOICES = (*FREQUENCIES, "custom")  # a cron job's frequency: a named one, or its custom_cron
ACTIVE_RUN = ("pending", "running")
Schedule = PeriodicTask | CronJob


@dataclass(frozen=True)
class FiringPolicy:
    # a slot fired later than this after its time is a misfire (the scheduler was down or behind)
    misfire_grace: timedelta = timedelta(seconds=30)
    batch_size: int = 500
    # at most this many catch-up runs per schedule per pass; the rest wait for the next pass
    max_catchup_runs: int = 100
    # slots looked at per schedule per pass when counting missed runs
    max_slots_scanned: int = 1000
    # the scheduler fires slots up to this long before their time, with `scheduled_for` set to
    # the slot, so that core dispatches them on time however many fall in the same second
    # (schedules whose overlap policy needs the previous run's outcome never fire early)
    lookahead: timedelta = timedelta()


@dataclass
class Batch:
    claimed: int  # schedules claimed (a full batch means more may be due)
    runs: list[ScheduleRun]  # runs fired (skipped ones excluded)
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)  # idempotency key -> create_task


@dataclass
class Plan:
    """What a schedule's attachments add: its calendars' exclusions, a calendar's own expression
    and config (the first active calendar that sets them, by attachment order)."""

    exclusions: Exclusions
    cron: str | None = None
    config: dict[str, Any] | None = None


def key_of(kind: str, schedule_id: int, planned: datetime) -> str:
    return f"{kind}:{schedule_id}:{iso(planned)}"


def cron_of(schedule: Schedule, plan: Plan | None = None) -> str:
    """The 5-field expression the schedule fires on (a calendar may give its own)."""
    if isinstance(schedule, CronJob):
        expression = (
            schedule.custom_cron if schedule.frequency == "custom" else FREQUENCIES[schedule.frequency]
        )
    else:
        expression = (plan.cron if plan and plan.cron else None) or schedule.cron_expression
    return normalize(expression or "")


def jitter_of(schedule: Schedule, planned: datetime) -> timedelta:
    """Deterministic (the same on every replica), spread over [0, jitter_seconds]."""
    if not schedule.jitter_seconds:
        return timedelta()
    digest = hashlib.blake2b(key_of(schedule.kind, schedule.id, planned).encode(), digest_size=8).digest()
    return timedelta(seconds=int.from_bytes(digest, "big") % (schedule.jitter_seconds + 1))


def next_slot(schedule: Schedule, after: datetime, plan: Plan | None) -> datetime | None:
    """The schedule's first slot after `after`, skipping its calendars' excluded dates and
    honouring start_date/end_date; None when no slot is left."""
    expression, tz = cron_of(schedule, plan), schedule.timezone
    start = getattr(schedule, "start_date", None)
    if start is not None and after < start:
        after = start - timedelta(microseconds=1)
    end = getattr(schedule, "end_date", None)
    exclusions = plan.exclusions if plan else None
    for _ in range(10_000):
        slot = next_fire(expression, tz, after)
        if end is not None and slot > end:
            return None
        resume = excluded_until(slot, exclusions)
        if resume is None:
            return slot
        after = resume - timedelta(microseconds=1)  # jump over the whole excluded range
    return None


def place(schedule: Schedule, slot: datetime | None) -> None:
    schedule.next_planned_at = slot
    schedule.next_run_at = None if slot is None else slot + jitter_of(schedule, slot)
    if slot is None:
        schedule.is_active = False


def reschedule(uow: UnitOfWork, schedule: Schedule, now: datetime) -> None:
    """Compute the next slot from `now` (creation, edits, toggle), never going back onto a slot
    that already fired: the scheduler fires up to `lookahead` early, so the next slot from
    `now` may be one whose run exists (its key would clash at the next pass)."""
    plan = plans_for(uow.session, [schedule]).get(schedule.id) if isinstance(schedule, PeriodicTask) else None
    if not schedule.is_active:
        schedule.next_planned_at = schedule.next_run_at = None
        return
    if _exhausted(schedule):
        place(schedule, None)
        return
    fired = last_fired_slot(uow.session, schedule)
    place(schedule, next_slot(schedule, max(now, fired) if fired else now, plan))


def last_fired_slot(session: Session, schedule: Schedule) -> datetime | None:
    """The newest slot the schedule fired (manual runs are not slots)."""
    if schedule.id is None:
        return None
    return session.scalar(
        select(func.max(ScheduleRun.planned_time)).where(
            ScheduleRun.schedule_kind == schedule.kind,
            ScheduleRun.schedule_id == schedule.id,
            ScheduleRun.trigger != "manual",
        )
    )


def _exhausted(schedule: Schedule) -> bool:
    limit = getattr(schedule, "max_executions", None)
    return limit is not None and schedule.executions_count >= limit


def plans_for(session: Session, schedules: Sequence[Schedule]) -> dict[int, Plan]:
    """One query for the calendars of many periodic tasks."""
    ids = [s.id for s in schedules if isinstance(s, PeriodicTask)]
    if not ids:
        return {}
    # a range, not an IN list of hundreds of ids: attachments are few, and a short statement
    # keeps the scheduler's batch cheap to send and to plan
    wanted = set(ids)
    rows = session.execute(
        select(CalendarAttachment, Calendar)
        .join(Calendar, Calendar.id == CalendarAttachment.calendar_id)
        .where(CalendarAttachment.periodic_task_id.between(min(ids), max(ids)), Calendar.is_active.is_(True))
        .order_by(CalendarAttachment.id)
    ).all()
    plans: dict[int, Plan] = {}
    calendars: dict[int, list[Calendar]] = defaultdict(list)
    for attachment, calendar in rows:
        if attachment.periodic_task_id not in wanted:
            continue
        plan = plans.setdefault(attachment.periodic_task_id, Plan(Exclusions()))
        calendars[attachment.periodic_task_id].append(calendar)
        if attachment.custom_cron and plan.cron is None:
            plan.cron = attachment.custom_cron
        if attachment.custom_config and plan.config is None:
            plan.config = dict(attachment.custom_config)
    # the schedules of one calendar share its parsed exclusions: a pass parses each calendar once,
    # however many of its schedules are due
    shared: dict[tuple[int, ...], Exclusions] = {}
    for task_id, attached in calendars.items():
        key = tuple(c.id for c in attached)
        if key not in shared:
            shared[key] = Exclusions()
            for calendar in attached:
                shared[key].add(calendar.excluded_dates, calendar.default_timezone)
        plans[task_id].exclusions = shared[key]
    return plans


def create_request(schedule: Schedule, plan: Plan | None, creator: dict[str, str] | None = None) -> dict:
    """`create_task` of schedule.fired: everything core needs to create the run's task."""
    who = creator or {
        "brand_name": schedule.brand_name,
        "created_by_id": schedule.created_by_id,
        "created_by_username": schedule.created_by_username,
    }
    if isinstance(schedule, CronJob):
        return {
            "task_type": schedule.task_type,
            "priority": None,
            "description": schedule.description or f"cron job {schedule.name}",
            "context_data": dict(schedule.task_config or {}),
            **who,
        }
    context = dict(schedule.context_data or {})
    if plan and plan.config:
        context.update(plan.config)
    return {
        "task_type": schedule.task_type,
        "priority": schedule.priority,
        "description": schedule.description,
        "context_data": context,
        "max_retries": schedule.max_retries,
        "timeout_minutes": schedule.timeout_minutes,
        **who,
    }


def _fired_event(schedule: Schedule, run: ScheduleRun, request: dict[str, Any]) -> catalog.ScheduleFired:
    return catalog.ScheduleFired(
        periodic_task_id=schedule.id if schedule.kind == PERIODIC else None,
        cron_job_id=schedule.id if schedule.kind == CRON_JOB else None,
        planned_time=iso(run.planned_time),
        fired_at=iso(run.fired_at),
        trigger=run.trigger,
        idempotency_key=run.idempotency_key,
        create_task=request,
    )


def _new_run(schedule: Schedule, planned: datetime, now: datetime, trigger: str, key: str) -> ScheduleRun:
    return ScheduleRun(
        brand_id=schedule.brand_id,
        schedule_kind=schedule.kind,
        schedule_id=schedule.id,
        planned_time=planned,
        fired_at=now,
        trigger=trigger,
        idempotency_key=key,
        status="pending",
        note="",
        overlapped=False,
    )


def _active_runs(uow: UnitOfWork, kind: str, ids: list[int]) -> dict[int, list[ScheduleRun]]:
    if not ids:
        return {}
    runs = uow.session.scalars(
        select(ScheduleRun).where(
            ScheduleRun.schedule_kind == kind,
            ScheduleRun.schedule_id.in_(ids),
            ScheduleRun.status.in_(ACTIVE_RUN),
        )
    ).all()
    out: dict[int, list[ScheduleRun]] = defaultdict(list)
    for run in runs:
        out[run.schedule_id].append(run)
    return out


def claim_due(
    uow: UnitOfWork,
    model: type[Schedule],
    now: datetime,
    limit: int,
    brand_id: int | None = None,
    lookahead: timedelta = timedelta(),
) -> list[Schedule]:
    stmt = select(model).where(model.is_active.is_(True), model.next_run_at <= now + lookahead)
    if lookahead:
        stmt = stmt.where(or_(model.overlap_policy == "allow", model.next_run_at <= now))
    if brand_id is not None:
        stmt = stmt.where(model.brand_id == brand_id)
    stmt = stmt.order_by(model.next_run_at, model.id).limit(limit)
    if is_postgres(uow.session.get_bind()):
        # a replica skips the rows another one is firing instead of waiting for them
        stmt = stmt.with_for_update(skip_locked=True)
    return list(uow.session.scalars(stmt))


def fire_due(
    uow: UnitOfWork,
    model: type[Schedule],
    now: datetime,
    policy: FiringPolicy,
    *,
    brand_id: int | None = None,
    trigger: str = "scheduler",
    limit: int | None = None,
) -> Batch:
    """Claim up to a batch of due schedules and fire their slots, in the caller's transaction.
    The caller commits; on a unique-key clash (another process fired the same slot first) it
    gets an empty batch after a rollback, and the next pass re-reads the schedules."""
    lookahead = policy.lookahead if trigger == "scheduler" else timedelta()
    schedules = claim_due(uow, model, now, limit or policy.batch_size, brand_id, lookahead)
    if not schedules:
        return Batch(0, [])
    # the batch is written with a few executemany statements below, not by the ORM's
    # per-object flush (hundreds of slots per transaction must cost milliseconds)
    for schedule in schedules:
        uow.session.expunge(schedule)
    plans = plans_for(uow.session, schedules)
    guarded = [s.id for s in schedules if s.overlap_policy != "allow"]
    active = _active_runs(uow, model.kind, guarded)
    fired: list[tuple[Schedule, ScheduleRun, dict[str, Any]]] = []
    skipped: list[ScheduleRun] = []
    slots: list[tuple[Schedule, list[tuple[datetime, str]]]] = []
    for schedule in schedules:
        horizon = now + lookahead if schedule.overlap_policy == "allow" else now
        try:
            due = _slots_to_fire(schedule, plans.get(schedule.id), now, horizon, policy, trigger)
        except (InvalidCron, LookupError, ValueError):
            # a row no API call can produce (edited by hand, a zone dropped from tzdata): it
            # must not stop every other schedule; it is switched off and logged
            log.exception("schedule %s:%s cannot be evaluated; deactivated", schedule.kind, schedule.id)
            place(schedule, None)
            schedule.updated_at = now
            continue
        slots.append((schedule, due))
    # a slot whose run exists already fired: skipped here, so that one schedule put back on it
    # (whatever did it) never makes the whole batch clash and roll back, pass after pass
    taken = _existing_keys(uow, [key_of(s.kind, s.id, p) for s, due in slots for p, _ in due])
    for schedule, due in slots:
        plan = plans.get(schedule.id)
        for planned, how in due:
            if _exhausted(schedule):
                break
            key = key_of(schedule.kind, schedule.id, planned)
            if key in taken:
                log.warning("slot %s fired already; skipped", key)
                continue
            run = _new_run(schedule, planned, now, how, key)
            previous = active.get(schedule.id, [])
            if previous:
                run.overlapped = True
                if schedule.overlap_policy == "skip":
                    run.status, run.note = "skipped", "overlap: the previous run is still active"
                    skipped.append(run)
                    continue
                if schedule.overlap_policy == "cancel_previous":
                    for old in previous:
                        old.cancel_requested_at = now
                        old.note = "cancel requested: a newer run started (overlap policy)"
            request = create_request(schedule, plan)
            fire_at = planned + jitter_of(schedule, planned)
            if fire_at > now:  # fired ahead: core holds the task until its time
                request["scheduled_for"] = iso(fire_at)
            fired.append((schedule, run, request))
            schedule.executions_count += 1
            schedule.last_run_at, schedule.last_run_status = now, "running"
            if schedule.overlap_policy != "allow":
                active[schedule.id] = [run]
        if _exhausted(schedule):
            place(schedule, None)
        schedule.updated_at = now
    try:
        uow.session.flush()  # runs marked for cancellation (cancel_previous), if any
        new_runs = [run for _, run, _ in fired] + skipped
        if new_runs:
            uow.session.execute(insert(ScheduleRun.__table__), [_run_row(run) for run in new_runs])
    except IntegrityError:
        uow.rollback()
        log.info("a slot was fired by another process first; this batch will be re-read")
        return Batch(0, [])
    table = model.__table__
    uow.session.execute(
        update(table)
        .where(table.c.id == bindparam("schedule_id"))
        .values({c: bindparam(c) for c in _ADVANCED}),
        [{"schedule_id": s.id, **{c: getattr(s, c) for c in _ADVANCED}} for s in schedules],
    )
    for schedule, run, request in fired:
        uow.publish(_fired_event(schedule, run, request), schedule.brand_id)
    return Batch(len(schedules), [run for _, run, _ in fired], {r.idempotency_key: q for _, r, q in fired})


def _existing_keys(uow: UnitOfWork, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found.update(
            uow.session.scalars(
                select(ScheduleRun.idempotency_key).where(ScheduleRun.idempotency_key.in_(chunk))
            )
        )
    return found


# what firing changes on a schedule row
_ADVANCED = (
    "next_planned_at",
    "next_run_at",
    "is_active",
    "executions_count",
    "missed_runs_count",
    "last_run_at",
    "last_run_status",
    "updated_at",
)
_RUN_COLUMNS = (
    "brand_id", "schedule_kind", "schedule_id", "planned_time", "fired_at", "trigger", "idempotency_key",
    "status", "note", "overlapped", "cancel_requested_at",
)  # fmt: skip


def _run_row(run: ScheduleRun) -> dict[str, Any]:
    return {c: getattr(run, c) for c in _RUN_COLUMNS}


def _slots_to_fire(
    schedule: Schedule,
    plan: Plan | None,
    now: datetime,
    horizon: datetime,
    policy: FiringPolicy,
    trigger: str,
) -> list[tuple[datetime, str]]:
    """The due slots to fire under the misfire policy, and places the schedule on its next slot.

    A due slot whose fire time is within `misfire_grace` of now is on time and fires. Older ones
    were missed (the scheduler was down or behind): `skip` fires none of them, `run_once` fires
    the newest one inside the catch-up window (unless an on-time slot fires anyway), `run_all`
    fires each one inside the window. Missed slots not fired are counted in missed_runs_count."""
    due: list[datetime] = []
    slot = schedule.next_planned_at
    while slot is not None and slot + jitter_of(schedule, slot) <= horizon:
        due.append(slot)
        if len(due) >= policy.max_slots_scanned:
            # a very long outage: stop scanning and jump to the present
            slot = next_slot(schedule, now - policy.misfire_grace, plan)
            break
        slot = next_slot(schedule, slot, plan)
    place(schedule, slot)
    on_time = [s for s in due if now - (s + jitter_of(schedule, s)) <= policy.misfire_grace]
    missed = [s for s in due if s not in on_time]
    window_start = now - timedelta(minutes=schedule.catchup_window_minutes)
    catchable = [s for s in missed if s >= window_start]
    if schedule.misfire_policy == "run_all":
        caught = catchable[-policy.max_catchup_runs :]
    elif schedule.misfire_policy == "run_once" and catchable and not on_time:
        caught = catchable[-1:]
    else:
        caught = []
    schedule.missed_runs_count += len(missed) - len(caught)
    return [(s, "catchup") for s in caught] + [(s, trigger) for s in on_time]


def fire_manual(
    uow: UnitOfWork, schedule: Schedule, now: datetime, creator: dict[str, str]
) -> tuple[ScheduleRun, dict[str, Any]]:
    """A run now, outside the schedule (execute-now / execute): its own key, the schedule's
    next slot unchanged. The overlap policy is not applied: the user asked for this run."""
    plan = plans_for(uow.session, [schedule]).get(schedule.id) if isinstance(schedule, PeriodicTask) else None
    key = f"{schedule.kind}:{schedule.id}:manual:{uuid.uuid4().hex}"
    run = _new_run(schedule, now, now, "manual", key)
    run.overlapped = bool(_active_runs(uow, schedule.kind, [schedule.id]).get(schedule.id))
    request = create_request(schedule, plan, creator)
    uow.session.add(run)
    uow.session.flush()
    uow.publish(_fired_event(schedule, run, request), schedule.brand_id)
    schedule.executions_count += 1
    schedule.last_run_at, schedule.last_run_status, schedule.updated_at = now, "running", now
    return run, request
