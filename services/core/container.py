"""core's composition root: everything a core process is made of, built once per process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import current_app

from shared.background import Loop, when_due
from shared.config import Settings, env_bool, env_float, env_int
from shared.events.bus import EventBus
from shared.events.inbox_consumer import InboxConsumer
from shared.prometheus_metrics import ScrapedFigures
from shared.service_container import ServiceContainer
from shared.service_context import ServiceContext, make_bus

from . import attempt_credentials, execution
from .models import Base
from .operations_gauges import operations_figures
from .read_model import read_model_handlers
from .task_types import TaskTypeRegistry
from .tasks.service import DUE_SIGNAL


@dataclass
class CoreContainer(ServiceContainer):
    registry: TaskTypeRegistry
    policy: execution.ExecutionPolicy
    strict_types: bool
    reports_threads: int = 1  # TASKHUB_CONSUMER_THREADS

    def consumers(self) -> list[InboxConsumer]:
        """Two queues: the attempt reports and the other services' events, and the heartbeats on
        their own so that lease renewals never wait behind a backlog of reports."""
        reports = self.ctx.inbox_consumer(
            "reports",
            {
                **read_model_handlers(self.registry),
                "worker.offline": execution.on_worker_offline(self.policy),
            },
            batch_handlers=execution.report_handlers(self.policy),
        )
        heartbeats = self.ctx.inbox_consumer(
            "heartbeats", {}, batch_handlers={"worker.heartbeat": execution.apply_heartbeats(self.policy)}
        )
        return [reports, heartbeats]

    def consumer_threads(self, consumer: InboxConsumer) -> int:
        # competing consumers on PostgreSQL are possible (a batch locks its tasks in id order and
        # checks each report's attempt), but one thread applying batches usually outruns them
        # (SQLite: one writer)
        if consumer.name != "reports" or self.ctx.engine.dialect.name == "sqlite":
            return 1
        return self.reports_threads

    def service_loops(self) -> list[Loop]:
        return [
            when_due("core.dispatcher", self.ctx.wakeups.signal(DUE_SIGNAL), self._dispatch_due),
            when_due("core.lease-reaper", self.ctx.wakeups.signal(execution.LEASE_SIGNAL), self._reap),
        ]

    def scraped_figures(self) -> list[ScrapedFigures]:
        online_seconds = self.registry.online_window.total_seconds()
        return [*super().scraped_figures(), *operations_figures(self.uow, self.bus, online_seconds)]

    def _dispatch_due(self) -> datetime | None:
        """Dispatch what is due; returns when the next task becomes due."""
        live = list(self.registry.live_types(max_age=0))
        with self.uow() as uow:
            while execution.dispatch_due(uow, live):
                uow.commit()
            # tasks of a type no live worker serves wait until a heartbeat announces one (it
            # wakes this loop)
            return execution.next_dispatch(uow, live)

    def _reap(self) -> datetime | None:
        """Recover the tasks of expired leases; returns when the next lease expires."""
        with self.uow() as uow:
            execution.reap_expired_leases(uow, self.policy)
            uow.commit()
            return execution.next_lease_expiry(uow)


def bootstrap(settings: Settings, bus: EventBus | None = None) -> CoreContainer:
    attempt_credentials.install(settings)
    ctx = ServiceContext(settings, Base.metadata, bus or make_bus(settings))
    return CoreContainer(
        ctx=ctx,
        registry=TaskTypeRegistry(
            ctx.session_factory, env_float(settings, "TASKHUB_WORKER_ONLINE_SECONDS", 30)
        ),
        policy=execution.ExecutionPolicy(
            lease_seconds=env_float(settings, "TASKHUB_LEASE_SECONDS", 30),
            max_lost_deliveries=env_int(settings, "TASKHUB_MAX_LOST_DELIVERIES", 3),
        ),
        strict_types=env_bool(settings, "TASKHUB_STRICT_TASK_TYPES", False),
        reports_threads=env_int(settings, "TASKHUB_CONSUMER_THREADS", 1),
    )


def core() -> CoreContainer:
    return current_app.extensions["core"]
