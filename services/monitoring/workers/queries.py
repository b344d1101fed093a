"""Read side of workers: the overview, and the parts of a worker's detail that belong to the
caller's brand (its current tasks and the performance of its runs, from metrics records)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from shared.events.envelope import iso, parse_iso, utcnow

from ..models import MetricsRecord as M
from ..models import Worker
from .service import online_clause, visible_to

BUSY_CPU_PERCENT = 85.0


def overview(session: Session, offline_seconds: float, brand_id: int) -> dict[str, Any]:
    """Workers are few (tens): the online ones are read and summed here."""
    total = session.scalar(select(func.count()).select_from(Worker).where(visible_to(brand_id))) or 0
    online = session.scalars(select(Worker).where(online_clause(offline_seconds), visible_to(brand_id))).all()
    queues: dict[str, dict[str, Any]] = {}
    for worker in online:
        for queue in worker.queues or ["-"]:
            entry = queues.setdefault(queue, {"workers": 0, "active_tasks": 0, "loads": []})
            entry["workers"] += 1
            entry["active_tasks"] += worker.active_tasks
            entry["loads"].append(worker.load_average)
    n = len(online)

    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 2) if values else 0.0

    avg_cpu = mean([w.cpu_percent for w in online])
    if n == 0:
        status = "unavailable"
    elif n < total or avg_cpu >= BUSY_CPU_PERCENT:
        status = "degraded"
    else:
        status = "healthy"
    return {
        "total_workers": int(total),
        "online_workers": n,
        "queues": {
            name: {"workers": q["workers"], "active_tasks": q["active_tasks"], "avg_load": mean(q["loads"])}
            for name, q in sorted(queues.items())
        },
        "system_health": {
            "overall_status": status,
            "avg_cpu_percent": avg_cpu,
            "avg_memory_percent": mean([w.memory_percent for w in online]),
            "total_active_tasks": sum(w.active_tasks for w in online),
            "avg_load_average": mean([w.load_average for w in online]),
        },
    }


def current_tasks(session: Session, worker: Worker, brand_id: int) -> list[dict[str, Any]]:
    """The worker's running tasks of the caller's brand only. The estimated completion is the
    start plus the type's average execution time over the brand's last 7 days of metrics."""
    mine = [t for t in worker.active_task_list or [] if t.get("brand_id") == brand_id]
    types = {str(t.get("task_type")) for t in mine}
    averages: dict[str, float] = dict(
        session.execute(
            select(M.task_type, func.avg(M.execution_time_ms))
            .where(M.brand_id == brand_id, M.task_type.in_(types), M.created_at >= utcnow() - timedelta(days=7))
            .group_by(M.task_type)
        ).all()
    ) if types else {}  # fmt: skip
    out = []
    for task in mine:
        started = parse_iso(task.get("started_at"))
        average = averages.get(str(task.get("task_type")))
        out.append(
            {
                "task_id": task.get("task_id"),
                "task_type": task.get("task_type"),
                "started_at": iso(started),
                "estimated_completion": iso(started + timedelta(milliseconds=float(average)))
                if started and average is not None
                else None,
            }
        )
    return out


def recent_performance(session: Session, worker_name: str, brand_id: int) -> dict[str, Any]:
    now = utcnow()
    out = {}
    for label, span in (("last_hour", timedelta(hours=1)), ("last_24_hours", timedelta(hours=24))):
        done, avg_ms, errors = session.execute(
            select(
                func.sum(case((M.succeeded.is_(True), 1), else_=0)),
                func.avg(M.execution_time_ms),
                func.sum(case((M.succeeded.is_(False), 1), else_=0)),
            ).where(M.brand_id == brand_id, M.worker_name == worker_name, M.updated_at >= now - span)
        ).one()
        out[label] = {
            "tasks_completed": int(done or 0),
            "avg_execution_time_ms": round(float(avg_ms or 0), 2),
            "errors": int(errors or 0),
        }
    return out
