"""The figures an operator watches that only core can see, read when core's /metrics is scraped
(never on a timer) and exported with core's other metrics (deploy/observability/ graphs and alerts
on them):

  taskhub_work_queue_ready_messages{queue}           work orders in the broker waiting for a worker
  taskhub_tasks_awaiting_dispatch{queue}             due tasks core has not sent yet (no live worker
                                                     serves their type, or the dispatcher is behind)
  taskhub_oldest_awaiting_dispatch_age_seconds{queue}  how long the oldest of them has been due
  taskhub_workers_live                               workers heard from within the online window
  taskhub_newest_worker_heartbeat_age_seconds        since the last heartbeat of any worker

Core's web app reads them (shared.prometheus_metrics.ScrapedFigures: a read serves a few seconds
of scrapes; a database or broker away leaves its figures out of the scrape); in Kubernetes the core
web pods export them, not core's background pods. Each read is cheap: the broker's figures are a
passive queue declaration per work queue, the due tasks are read through the partial index on
`dispatch_due_at` (only tasks waiting for dispatch have one), and `worker_presence` holds one row
per worker. A task already sent to the broker is counted by the queue's ready messages, not by age
(the broker does not say how old its oldest message is).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from prometheus_client.metrics_core import Metric
from sqlalchemy import func, select

from shared.events.bus import BusUnavailable, EventBus
from shared.events.envelope import utcnow
from shared.prometheus_metrics import ScrapedFigures, scraped_gauge
from shared.task_states import PRIORITIES
from shared.unit_of_work import UnitOfWork

from .models import Task, WorkerPresence

QUEUE_READY = scraped_gauge(
    "taskhub_work_queue_ready_messages",
    "Work orders in the broker's work queue waiting for a worker",
    ("queue",),
)
AWAITING_DISPATCH = scraped_gauge(
    "taskhub_tasks_awaiting_dispatch",
    "Due tasks core has not dispatched to a work queue yet",
    ("queue",),
)
OLDEST_AWAITING_DISPATCH = scraped_gauge(
    "taskhub_oldest_awaiting_dispatch_age_seconds",
    "Seconds since the oldest undispatched due task became due (0: none)",
    ("queue",),
)
WORKERS_LIVE = scraped_gauge(
    "taskhub_workers_live",
    "Workers whose last heartbeat is within the online window",
)
NEWEST_HEARTBEAT_AGE = scraped_gauge(
    "taskhub_newest_worker_heartbeat_age_seconds",
    "Seconds since the most recent heartbeat of any worker (absent before the first one)",
)


def database_figures(uow: UnitOfWork, online_seconds: float) -> list[Metric]:
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
    awaiting, oldest_age = AWAITING_DISPATCH.family(), OLDEST_AWAITING_DISPATCH.family()
    for priority in PRIORITIES:
        count, oldest = waiting.get(priority, (0, None))
        awaiting.add_metric([priority], count)
        oldest_age.add_metric([priority], (now - oldest).total_seconds() if oldest else 0)
    cutoff = now - timedelta(seconds=online_seconds)
    live = WORKERS_LIVE.family()
    live.add_metric([], session.scalar(select(func.count()).where(WorkerPresence.last_seen >= cutoff)) or 0)
    heartbeat_age = NEWEST_HEARTBEAT_AGE.family()
    newest = session.scalar(select(func.max(WorkerPresence.last_seen)))
    if newest is not None:
        heartbeat_age.add_metric([], max(0.0, (now - newest).total_seconds()))
    return [awaiting, oldest_age, live, heartbeat_age]


def broker_figures(bus: EventBus) -> list[Metric]:
    ready = QUEUE_READY.family()
    for priority in PRIORITIES:
        figures = bus.queue_figures(bus.work_queue_name(priority))
        if figures is None:  # a work queue always exists (the bus declares it): the broker is away
            raise BusUnavailable(f"no figures for the {priority} work queue")
        ready.add_metric([priority], figures.ready)
    return [ready]


def operations_figures(
    uow_factory: Callable[[], UnitOfWork], bus: EventBus, online_seconds: float
) -> list[ScrapedFigures]:
    """The database's figures and the broker's, each left out on its own when its source is away."""

    def from_database() -> list[Metric]:
        with uow_factory() as uow:
            return database_figures(uow, online_seconds)

    return [
        ScrapedFigures("core's due tasks and workers (database)", from_database),
        ScrapedFigures("the work queues' depth (broker)", lambda: broker_figures(bus)),
    ]
