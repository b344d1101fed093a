"""Read side of periodic tasks: the list with every filter of §4, stats, performance-analysis.
Every query starts with the caller's brand (the indexes do too)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session, selectinload

from shared.events.envelope import iso
from shared.listing import Listing, column_filters, ordering_columns, timestamp_filters

from ..models import PERIODIC, PeriodicTask, ScheduleRun
from .schemas import PeriodicTaskListArgs

PERIODIC_TASKS = Listing(
    filters={
        **column_filters(PeriodicTaskListArgs, PeriodicTask),
        "cron_expression": lambda v: PeriodicTask.cron_expression == " ".join(v.split()),
        "next_run_before": lambda v: PeriodicTask.next_run_at < v,
        **timestamp_filters(PeriodicTask.created_at, PeriodicTask.updated_at),
    },
    ordering=ordering_columns(PeriodicTaskListArgs, PeriodicTask),
    tiebreak=PeriodicTask.id,
    search=(PeriodicTask.task_type, PeriodicTask.description, PeriodicTask.cron_expression),
)


def periodic_task_list(brand_id: int, args: dict[str, Any]) -> Select[Any]:
    stmt = PERIODIC_TASKS.select(select(PeriodicTask).where(PeriodicTask.brand_id == brand_id), args)
    return stmt.options(selectinload(PeriodicTask.attachments))


def _run_figures(session: Session, brand_id: int, since: datetime) -> dict[str, Any]:
    finished = ScheduleRun.status.in_(("success", "failed", "cancelled"))
    row = session.execute(
        select(
            func.count(),
            func.sum(case((ScheduleRun.status == "success", 1), else_=0)),
            func.sum(case((ScheduleRun.status.in_(("failed", "cancelled")), 1), else_=0)),
            func.sum(case((ScheduleRun.status == "skipped", 1), else_=0)),
            func.sum(case((finished, 1), else_=0)),
        ).where(
            ScheduleRun.brand_id == brand_id,
            ScheduleRun.schedule_kind == PERIODIC,
            ScheduleRun.fired_at >= since,
        )
    ).one()
    total, success, failed, skipped, done = (int(v or 0) for v in row)
    return {
        "runs": total - skipped,
        "successful": success,
        "failed": failed,
        "skipped": skipped,
        "success_rate": round(100.0 * success / done, 2) if done else None,
    }


def stats(session: Session, brand_id: int, now: datetime) -> dict[str, Any]:
    counts = dict(
        session.execute(
            select(PeriodicTask.is_active, func.count())
            .where(PeriodicTask.brand_id == brand_id)
            .group_by(PeriodicTask.is_active)
        ).all()
    )
    due_soon = session.execute(
        select(func.count()).where(
            PeriodicTask.brand_id == brand_id,
            PeriodicTask.is_active.is_(True),
            PeriodicTask.next_run_at <= now + timedelta(hours=1),
        )
    ).scalar_one()
    missed = session.execute(
        select(func.coalesce(func.sum(PeriodicTask.missed_runs_count), 0)).where(
            PeriodicTask.brand_id == brand_id
        )
    ).scalar_one()
    return {
        "total_schedules": int(sum(counts.values())),
        "active_schedules": int(counts.get(True, 0)),
        "inactive_schedules": int(counts.get(False, 0)),
        "due_within_next_hour": int(due_soon),
        "overdue": int(
            session.execute(
                select(func.count()).where(
                    PeriodicTask.brand_id == brand_id,
                    PeriodicTask.is_active.is_(True),
                    PeriodicTask.next_run_at <= now,
                )
            ).scalar_one()
        ),
        "missed_runs_total": int(missed),
        "last_24h": _run_figures(session, brand_id, now - timedelta(hours=24)),
        "last_7d": _run_figures(session, brand_id, now - timedelta(days=7)),
        "generated_at": iso(now),
    }


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 3)


def _avg(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def performance_analysis(session: Session, brand_id: int, now: datetime, days: int) -> dict[str, Any]:
    """Per schedule over the window: runs, success rate, average duration, start delay (the
    task's start minus the planned time) average and p95, fire delay, overlaps seen."""
    since = now - timedelta(days=days)
    runs = session.execute(
        select(
            ScheduleRun.schedule_id,
            ScheduleRun.status,
            ScheduleRun.planned_time,
            ScheduleRun.fired_at,
            ScheduleRun.started_at,
            ScheduleRun.finished_at,
            ScheduleRun.overlapped,
            ScheduleRun.trigger,
        ).where(
            ScheduleRun.brand_id == brand_id,
            ScheduleRun.schedule_kind == PERIODIC,
            ScheduleRun.fired_at >= since,
        )
    ).all()
    names = dict(
        session.execute(
            select(PeriodicTask.id, PeriodicTask.task_type).where(PeriodicTask.brand_id == brand_id)
        ).all()
    )
    grouped: dict[int, list[Any]] = defaultdict(list)
    for run in runs:
        grouped[run.schedule_id].append(run)
    schedules = []
    for schedule_id, items in sorted(grouped.items()):
        fired = [r for r in items if r.status != "skipped"]
        done = [r for r in fired if r.status in ("success", "failed", "cancelled")]
        # manual runs are planned "now": their delay says nothing about the scheduler
        planned = [r for r in fired if r.trigger != "manual"]
        start_delays = [(r.started_at - r.planned_time).total_seconds() for r in planned if r.started_at]
        fire_delays = [(r.fired_at - r.planned_time).total_seconds() for r in planned]
        durations = [
            (r.finished_at - r.started_at).total_seconds() for r in done if r.started_at and r.finished_at
        ]
        success = sum(1 for r in done if r.status == "success")
        schedules.append(
            {
                "periodic_task_id": schedule_id,
                "task_type": names.get(schedule_id),
                "runs": len(fired),
                "successful": success,
                "failed": len(done) - success,
                "success_rate": round(100.0 * success / len(done), 2) if done else None,
                "avg_duration_seconds": _avg(durations),
                "start_delay_avg_seconds": _avg(start_delays),
                "start_delay_p95_seconds": _p95(start_delays),
                "fire_delay_avg_seconds": _avg(fire_delays),
                "fire_delay_p95_seconds": _p95(fire_delays),
                "overlaps_seen": sum(1 for r in items if r.overlapped),
                "skipped_for_overlap": sum(1 for r in items if r.status == "skipped"),
            }
        )
    return {"period": {"start": iso(since), "end": iso(now), "days": days}, "schedules": schedules}
