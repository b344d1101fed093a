"""monitoring's composition root: everything a monitoring process is made of, built once."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from shared.background import Loop
from shared.config import Settings, env_float, env_int
from shared.events.bus import EventBus
from shared.events.inbox_consumer import InboxConsumer
from shared.service_container import ServiceContainer
from shared.service_context import ServiceContext, make_bus

from .alerts.channels import SmtpSettings, WebhookSettings
from .alerts.notifier import NOTIFIER_WAKEUP, Notifier
from .handlers import batch_handlers
from .models import Base
from .workers.service import WATCH_WAKEUP
from .workers.watch import WorkerWatch


@dataclass
class MonitoringContainer(ServiceContainer):
    offline_seconds: float
    notifier: Notifier
    worker_watch: WorkerWatch
    test_sends_per_minute: int = 5

    def consumers(self) -> list[InboxConsumer]:
        return [self.ctx.inbox_consumer("monitoring", {}, batch_handlers=batch_handlers(), read_model=True)]

    def service_loops(self) -> list[Loop]:
        """Two loops that sleep until woken or until something they know of is due."""
        return [self.worker_watch.loop(), self.notifier.loop()]


def bootstrap(settings: Settings, bus: EventBus | None = None) -> MonitoringContainer:
    ctx = ServiceContext(settings, Base.metadata, bus or make_bus(settings))
    offline_seconds = env_float(settings, "TASKHUB_WORKER_OFFLINE_SECONDS", 30)
    notifier = Notifier(
        ctx.session_factory,
        WebhookSettings.from_settings(settings),
        SmtpSettings.from_settings(settings),
        wakeup=ctx.wakeups.signal(NOTIFIER_WAKEUP),
        max_attempts=env_int(settings, "TASKHUB_NOTIFY_MAX_ATTEMPTS", 5),
        concurrency=env_int(settings, "TASKHUB_NOTIFIER_CONCURRENCY", 8),
        per_brand_per_minute=env_int(settings, "TASKHUB_NOTIFY_PER_BRAND_PER_MINUTE", 60),
    )
    return MonitoringContainer(
        ctx=ctx,
        offline_seconds=offline_seconds,
        notifier=notifier,
        worker_watch=WorkerWatch(ctx.uow, offline_seconds, ctx.wakeups.signal(WATCH_WAKEUP)),
        test_sends_per_minute=env_int(settings, "TASKHUB_ALERT_TEST_SENDS_PER_MINUTE", 5),
    )


def monitoring() -> MonitoringContainer:
    return current_app.extensions["monitoring"]
