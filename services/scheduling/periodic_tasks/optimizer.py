"""optimize-schedules: find the minutes of the next 24 hours where more than `max_per_minute` of
a brand's schedules fire together, and move some of them (those firing at a fixed minute) to the
least loaded minute within `spread_minutes` after, by rewriting the minute field only. The hour,
days and time zone of each schedule stay what the user wrote."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from shared.events.envelope import iso
from shared.unit_of_work import UnitOfWork

from ..cron import normalize, slots
from ..models import PeriodicTask
from ..planning import replan

HORIZON = timedelta(hours=24)
MAX_SCHEDULES = 2000


def _fires(expression: str, tz: str, now: datetime) -> list[datetime]:
    out: list[datetime] = []
    for moment in slots(expression, tz, now):
        if moment > now + HORIZON or len(out) >= 1440:
            break
        out.append(moment)
    return out


def optimize(uow: UnitOfWork, brand_id: int, now: datetime, options: dict[str, Any]) -> dict[str, Any]:
    limit, spread = options["max_per_minute"], options["spread_minutes"]
    schedules = list(
        uow.session.scalars(
            select(PeriodicTask)
            .where(PeriodicTask.brand_id == brand_id, PeriodicTask.is_active.is_(True))
            .order_by(PeriodicTask.id)
            .limit(MAX_SCHEDULES)
            .options(selectinload(PeriodicTask.attachments))
        )
    )
    buckets: dict[datetime, list[PeriodicTask]] = defaultdict(list)
    minute_load: Counter[int] = Counter()
    for schedule in schedules:
        expression = normalize(schedule.cron_expression)
        for moment in _fires(expression, schedule.timezone, now):
            buckets[moment].append(schedule)
        minute = expression.split(" ")[0]
        if minute.isdigit():
            minute_load[int(minute)] += 1
    crowded = sorted((m, group) for m, group in buckets.items() if len(group) > limit)
    peak_before = max((len(g) for g in buckets.values()), default=0)
    proposals: dict[int, dict[str, Any]] = {}
    for _moment, group in crowded:
        staying = [s for s in group if s.id not in proposals]
        movable = [s for s in staying if normalize(s.cron_expression).split(" ")[0].isdigit()]
        excess = len(staying) - limit
        for schedule in movable[len(movable) - max(0, excess) :] if excess > 0 else []:
            fields = normalize(schedule.cron_expression).split(" ")
            current = int(fields[0])
            candidates = [m for m in range(current + 1, min(60, current + spread))] or list(
                range(max(0, current - spread + 1), current)
            )
            target = min(candidates, key=lambda m: (minute_load[m], abs(m - current)))
            minute_load[current] -= 1
            minute_load[target] += 1
            proposed = " ".join([str(target), *fields[1:]])
            proposals[schedule.id] = {
                "periodic_task_id": schedule.id,
                "task_type": schedule.task_type,
                "current_cron": schedule.cron_expression,
                "proposed_cron": proposed,
                "shift_minutes": target - current,
            }
    applied = not options["dry_run"] and bool(proposals)
    if applied:
        for schedule in schedules:
            if schedule.id in proposals:
                schedule.cron_expression = proposals[schedule.id]["proposed_cron"]
                schedule.updated_at = now
                replan(uow, schedule, now)
    return {
        "dry_run": options["dry_run"],
        "applied": applied,
        "max_per_minute": limit,
        "horizon_hours": int(HORIZON.total_seconds() // 3600),
        "schedules_analyzed": len(schedules),
        "crowded_minutes": [{"at": iso(m), "schedules": len(g)} for m, g in crowded[:100]],
        "peak_per_minute_before": peak_before,
        "proposals": list(proposals.values()),
    }
