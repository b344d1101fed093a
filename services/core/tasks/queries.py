"""Read side of tasks: the list with every filter and ordering of §1, and the stats. Every
query is scoped to the caller's brand first (all indexes start with brand_id)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from shared import task_states as st
from shared.db import seconds_between
from shared.events.bus import EventBus
from shared.events.envelope import utcnow
from shared.listing import Listing, column_filters, ordering_columns, timestamp_filters

from ..models import Task, WorkerPresence, search_text
from .schemas import TaskListArgs

# `search` is task_list's own: it matches on models.search_text, the trigram index's expression
TASKS = Listing(
    filters={
        # status, priority and the flags are written out: they replace the derived ones (status
        # expands `active`, priority filters the rank column; `= true` is what the indexes serve)
        **column_filters(TaskListArgs, Task),
        "status": lambda v: Task.status.in_(_expand_status(v)),
        # the rank column, so that the (brand, rank, created) index serves filter and ordering at once
        "priority": lambda v: Task.priority_rank.in_([st.PRIORITY_RANK[p] for p in v]),
        "task_type__startswith": lambda v: Task.task_type.startswith(v, autoescape=True),
        "has_metrics": lambda v: Task.has_metrics == v,
        "is_resumable": lambda v: Task.is_resumable == v,
        "is_periodic": lambda v: Task.is_periodic == v,
        **timestamp_filters(Task.created_at, Task.updated_at),
    },
    ordering=ordering_columns(TaskListArgs, Task, priority=Task.priority_rank),
    tiebreak=(Task.created_at, Task.id),
    ranges={
        "execution_time": Task.execution_time_ms,
        "retry_count": Task.retry_count,
        "progress_percentage": Task.progress_percentage,
    },
)


def _expand_status(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        out.extend(st.ACTIVE if value == "active" else [value])
    return out


def task_list(brand_id: int, args: dict[str, Any]) -> Select[Any]:
    stmt = TASKS.select(select(Task).where(Task.brand_id == brand_id), args)
    if args.get("search"):
        # search_text() is the indexed expression, already lowercased (search_clause's lower()
        # around it would keep the index from serving it)
        stmt = stmt.where(search_text().contains(args["search"].lower(), autoescape=True))
    return stmt


def _start_of_today() -> datetime:
    now = utcnow()
    return datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)


def _live_workers(session: Session, online_seconds: float) -> dict[str, int]:
    """Workers heard from recently, per queue they serve. Workers pull (basic.get), so the broker
    never counts them as consumers: their heartbeats do."""
    cutoff = utcnow() - timedelta(seconds=online_seconds)
    counts: dict[str, int] = {}
    for queues in session.scalars(select(WorkerPresence.queues).where(WorkerPresence.last_seen >= cutoff)):
        for queue in queues or []:
            counts[queue] = counts.get(queue, 0) + 1
    return counts


def queue_stats(
    session: Session, brand_id: int, bus: EventBus, online_seconds: float = 30.0
) -> dict[str, Any]:
    today = _start_of_today()
    workers = _live_workers(session, online_seconds)
    rows = session.execute(
        select(
            Task.queue_name,
            func.sum(case((Task.status.in_((st.PENDING, st.RETRYING)), 1), else_=0)),
            func.sum(case((Task.status == st.RUNNING, 1), else_=0)),
            func.sum(case((Task.created_at >= today, 1), else_=0)),
        )
        .where(Task.brand_id == brand_id)
        .group_by(Task.queue_name)
    ).all()
    by_queue = {r[0]: r for r in rows}
    queues = {}
    for priority in st.PRIORITIES:
        row = by_queue.get(priority)
        figures = bus.queue_figures(bus.work_queue_name(priority))
        queues[priority] = {
            "pending": int(row[1] or 0) if row else 0,
            "running": int(row[2] or 0) if row else 0,
            "total_today": int(row[3] or 0) if row else 0,
            # shared infrastructure: live broker figures are the same for every brand
            "broker_ready": figures.ready if figures else None,
            "broker_unacked": figures.unacked if figures else None,
            "consumers": figures.consumers if figures else None,
            "workers": workers.get(priority, 0),
        }
    distribution = dict(
        session.execute(
            select(Task.status, func.count()).where(Task.brand_id == brand_id).group_by(Task.status)
        ).all()
    )
    durations = session.execute(
        select(Task.queue_name, func.avg(_duration_seconds()))
        .where(Task.brand_id == brand_id, Task.status == st.COMPLETED, Task.started_at.is_not(None))
        .group_by(Task.queue_name)
    ).all()
    return {
        "total_tasks": sum(distribution.values()),
        "queues": queues,
        "status_distribution": {s: int(distribution.get(s, 0)) for s in st.STATUSES},
        "avg_processing_time_minutes": {
            q: round(float(avg or 0) / 60, 3) for q, avg in durations if q in st.PRIORITIES
        },
    }


def _duration_seconds() -> Any:
    """completed_at - started_at in seconds, on PostgreSQL and SQLite alike."""
    return seconds_between(Task.completed_at, Task.started_at)


def type_stats(session: Session, brand_id: int) -> dict[str, Any]:
    rows = session.execute(
        select(
            Task.task_type,
            func.count(),
            func.sum(case((Task.status == st.COMPLETED, 1), else_=0)),
            func.sum(case((Task.status == st.FAILED, 1), else_=0)),
            func.avg(case((Task.status == st.COMPLETED, _duration_seconds()), else_=None)),
        )
        .where(Task.brand_id == brand_id)
        .group_by(Task.task_type)
    ).all()
    out = {}
    for task_type, total, completed, failed, avg_seconds in rows:
        finished = int(completed or 0) + int(failed or 0)
        out[task_type] = {
            "total": int(total),
            "completed": int(completed or 0),
            "failed": int(failed or 0),
            "avg_duration_minutes": round(float(avg_seconds or 0) / 60, 3),
            "success_rate": round(100.0 * int(completed or 0) / finished, 2) if finished else None,
        }
    return {"task_types": out}
