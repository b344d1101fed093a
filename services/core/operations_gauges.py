"""The figures an operator watches that only core can see, refreshed by core's background process
every REFRESH_SECONDS and exported with core's other metrics (deploy/observability/ graphs and
alerts on them):

  taskhub_work_queue_ready_messages{queue}           work orders in the broker waiting for a worker
  taskhub_tasks_awaiting_dispatch{queue}             due tasks core has not sent yet (no live worker
                                                     serves their type, or the dispatcher is behind)
  taskhub_oldest_awaiting_dispatch_age_seconds{queue}  how long the oldest of them has been due
  taskhub_workers_live                               workers heard from within the online window
  taskhub_newest_worker_heartbeat_age_seconds        since the last heartbeat of any worker

Each read is cheap: the broker's figures are a passive queue declaration, the due tasks are read
through the partial index on `dispatch_due_at` (only tasks waiting for dispatch have one), and
`worker_presence` holds one row per worker. A task already sent to the broker is counted by the
queue's ready messages, not by age (the broker does not say how old its oldest message is).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from prometheus_client import Gauge
from sqlalchemy import func, select

from shared.background import Loop, every
from shared.events.bus import EventBus
from shared.events.envelope import utcnow
from shared.task_states import PRIORITIES
from shared.unit_of_work import UnitOfWork

from .models import Task, WorkerPresence

log = logging.getLogger(__name__)

REFRESH_SECONDS = 15.0

# Written by core's background process alone; "mostrecent" so that, where the web processes share
# its multiprocess folder (`make up`), the figure of a restarted process replaces the old one.
QUEUE_READY = Gauge(
    "taskhub_work_queue_ready_messages",
    "Work orders in the broker's work queue waiting for a worker",
    ["queue"],
    multiprocess_mode="mostrecent",
)
AWAITING_DISPATCH = Gauge(
    "taskhub_tasks_awaiting_dispatch",
    "Due tasks core has not dispatched to a work queue yet",
    ["queue"],
    multiprocess_mode="mostrecent",
)
OLDEST_AWAITING_DISPATCH = Gauge(
    "taskhub_oldest_awaiting_dispatch_age_seconds",
    "Seconds since the oldest undispatched due task became due (0: none)",
    ["queue"],
    multiprocess_mode="mostrecent",
)
WORKERS_LIVE = Gauge(
    "taskhub_workers_live",
    "Workers whose last heartbeat is within the online window",
    multiprocess_mode="mostrecent",
)
NEWEST_HEARTBEAT_AGE = Gauge(
    "taskhub_newest_worker_heartbeat_age_seconds",
    "Seconds since the most recent heartbeat of any worker (absent before the first one)",
    multiprocess_mode="mostrecent",
)


def refresh(uow: UnitOfWork, bus: EventBus, online_seconds: float) -> None:
    now = utcnow()
    session = uow.session
    waiting = {
        priority: (count, oldest)
        for priority, count, oldest in session.execute(
            select(Task.priority, func.count(), func.min(Task.dispatch_due_at))
            .where(Task.dispatch_due_at.is_not(None), Task.dispatch_due_at <= now)
            .group_by(Task.priority)
        )
    }
    for priority in PRIORITIES:
        count, oldest = waiting.get(priority, (0, None))
        AWAITING_DISPATCH.labels(priority).set(count)
        OLDEST_AWAITING_DISPATCH.labels(priority).set((now - oldest).total_seconds() if oldest else 0)
        figures = bus.queue_figures(bus.work_queue_name(priority))  # None: the broker is away
        if figures is not None:
            QUEUE_READY.labels(priority).set(figures.ready)
    cutoff = now - timedelta(seconds=online_seconds)
    live = session.scalar(select(func.count()).where(WorkerPresence.last_seen >= cutoff))
    WORKERS_LIVE.set(live or 0)
    newest = session.scalar(select(func.max(WorkerPresence.last_seen)))
    if newest is not None:
        NEWEST_HEARTBEAT_AGE.set(max(0.0, (now - newest).total_seconds()))


def refresh_loop(uow_factory: Callable[[], UnitOfWork], bus: EventBus, online_seconds: float) -> Loop:
    def job() -> None:
        with uow_factory() as uow:
            refresh(uow, bus, online_seconds)

    return every("core.operations-gauges", REFRESH_SECONDS, job)
