"""monitoring's composition root: everything a monitoring process is made of, built once."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from shared.background import Loop, every
from shared.config import Settings, env_float, env_int
from shared.events.bus import EventBus
from shared.events.inbox_consumer import InboxConsumer
from shared.service_context import ServiceContext, make_bus
from shared.unit_of_work import UnitOfWork

from .alerts.channels import SmtpSettings, WebhookSettings
from .alerts.notifier import Notifier
from .handlers import event_handlers
from .models import Base
from .workers import service as workers


@dataclass
class MonitoringContainer:
    ctx: ServiceContext
    offline_seconds: float
    notifier: Notifier
    sweep_interval: float = 1.0
    test_sends_per_minute: int = 5

    @property
    def bus(self) -> EventBus:
        return self.ctx.bus

    @property
    def session_factory(self) -> sessionmaker[Session]:
        return self.ctx.session_factory

    def uow(self) -> UnitOfWork:
        return self.ctx.uow()

    def consumers(self) -> list[InboxConsumer]:
        return [self.ctx.inbox_consumer("monitoring", event_handlers())]

    def background_loops(self) -> list[Loop]:
        loops = self.ctx.messaging_loops()
        for consumer in self.consumers():
            subscription = consumer.subscription(self.bus, f"monitoring.{consumer.name}")
            loops.append(Loop(f"monitoring.consumer.{consumer.name}", subscription.run))
        loops.append(every("monitoring.worker-watch", self.sweep_interval, self.mark_silent_workers))
        loops.append(Loop("monitoring.notifier", self.notifier.run))
        return loops

    def mark_silent_workers(self) -> int:
        with self.uow() as uow:
            count = workers.mark_silent_offline(uow, self.offline_seconds)
            uow.commit()
        return count


def bootstrap(settings: Settings, bus: EventBus | None = None) -> MonitoringContainer:
    ctx = ServiceContext(settings, Base.metadata, bus or make_bus(settings))
    offline_seconds = env_float(settings, "TASKHUB_WORKER_OFFLINE_SECONDS", 30)
    notifier = Notifier(
        ctx.session_factory,
        WebhookSettings.from_settings(settings),
        SmtpSettings.from_settings(settings),
        poll_interval=env_float(settings, "TASKHUB_NOTIFIER_POLL_SECONDS", 0.5),
        max_attempts=env_int(settings, "TASKHUB_NOTIFY_MAX_ATTEMPTS", 5),
        concurrency=env_int(settings, "TASKHUB_NOTIFIER_CONCURRENCY", 8),
        per_brand_per_minute=env_int(settings, "TASKHUB_NOTIFY_PER_BRAND_PER_MINUTE", 60),
    )
    return MonitoringContainer(
        ctx=ctx,
        offline_seconds=offline_seconds,
        notifier=notifier,
        # a silent worker is noticed within a third of its allowance (at least every 5 s)
        sweep_interval=max(0.2, min(5.0, offline_seconds / 3)),
        test_sends_per_minute=env_int(settings, "TASKHUB_ALERT_TEST_SENDS_PER_MINUTE", 5),
    )


def monitoring() -> MonitoringContainer:
    return current_app.extensions["monitoring"]
