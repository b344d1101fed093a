"""What a service process is built from (its composition root fills it): settings, database,
outbox/inbox tables, the bus, and the unit-of-work factory the service layer uses."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, MetaData, Table, text
from sqlalchemy.orm import Session, sessionmaker

from .background import Loop, when_due
from .config import ConfigError, Settings, env_int
from .db import make_engine, make_session_factory, messaging_tables
from .events.bus import EventBus, FilteredBindings
from .events.delivery_batches import DEFAULT_BATCH_LINGER_SECONDS, DEFAULT_READ_MODEL_LINGER_SECONDS
from .events.inbox_consumer import BatchEventHandler, EventHandler, InboxConsumer
from .events.inbox_purge import InboxPurge
from .events.inprocess_bus import InProcessBus
from .events.outbox_relay import OutboxRelay
from .unit_of_work import UnitOfWork
from .wakeups import Wakeups

# Deliveries a consumer applies in one transaction: past a few dozen the commit is no longer what
# costs, and a failed batch (re-applied one by one) stays cheap.
DEFAULT_CONSUMER_BATCH = 200

_embedded_bus_lock = threading.Lock()
_embedded_bus: InProcessBus | None = None


def make_bus(settings: Settings) -> EventBus:
    """RabbitMQ when AMQP_URL is set; else the one in-process bus all embedded services share."""
    global _embedded_bus
    if settings.amqp_url:
        from .events.rabbitmq_bus import RabbitMQBus

        return RabbitMQBus(settings.amqp_url, prefix=settings.bus_prefix)
    with _embedded_bus_lock:
        if _embedded_bus is None:
            _embedded_bus = InProcessBus(prefix=settings.bus_prefix)
        return _embedded_bus


@dataclass
class ServiceContext:
    settings: Settings
    metadata: MetaData
    bus: EventBus
    engine: Engine = field(init=False)
    session_factory: sessionmaker[Session] = field(init=False)
    outbox: Table = field(init=False)
    inbox: Table = field(init=False)
    wakeups: Wakeups = field(init=False)

    def __post_init__(self) -> None:
        self.engine = make_engine(self.settings.database_url)
        self.wakeups = Wakeups(self.engine)
        self.session_factory = make_session_factory(self.engine)
        self.outbox = self.metadata.tables["outbox"]
        self.inbox = self.metadata.tables["inbox"]

    @property
    def service(self) -> str:
        return self.settings.service

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory, self.outbox, self.service, self.wakeups.set)

    def relay(self) -> OutboxRelay:
        return OutboxRelay(
            self.engine,
            self.outbox,
            self.bus,
            self.service,
            self.wakeups.signal("outbox"),
            linger=self.batch_linger / 2,
        )

    def messaging_loops(self) -> list[Loop]:
        """The loops every background process runs: its outbox relay, its inbox's purge and its
        wake-up listener."""
        purge = InboxPurge(self.engine, self.inbox, self.inbox_retention)
        loops = [
            Loop(f"{self.service}.relay", self.relay().run),
            when_due(f"{self.service}.inbox-purge", self.wakeups.signal("inbox-purge"), purge.run_once),
        ]
        listener = self.wakeups.listener()
        return loops + ([listener] if listener else [])

    @property
    def inbox_retention(self) -> timedelta:
        """TASKHUB_INBOX_RETENTION_HOURS: how long an applied event's id is remembered. A
        redelivery older than that (far past any broker's redelivery) would be applied again."""
        hours = env_int(self.settings, "TASKHUB_INBOX_RETENTION_HOURS", 7 * 24)
        if hours < 1:
            raise ConfigError(f"TASKHUB_INBOX_RETENTION_HOURS must be at least 1, got {hours}")
        return timedelta(hours=hours)

    def inbox_consumer(
        self,
        name: str,
        handlers: Mapping[str, EventHandler],
        *,
        batch_handlers: Mapping[str, BatchEventHandler] | None = None,
        filtered: FilteredBindings | None = None,
        retired: Sequence[str] = (),
        read_model: bool = False,
    ) -> InboxConsumer:
        """The service's consumer `name`, applying up to TASKHUB_CONSUMER_BATCH deliveries per
        transaction (docs/events.md). A `read_model` (a service following core's events, which
        no task's trip waits on) lingers longer for larger batches."""
        batch_size = env_int(self.settings, "TASKHUB_CONSUMER_BATCH", DEFAULT_CONSUMER_BATCH)
        if batch_size < 1:
            raise ConfigError(f"TASKHUB_CONSUMER_BATCH must be at least 1, got {batch_size}")
        return InboxConsumer(
            name,
            self.service,
            self.uow,
            self.inbox,
            handlers,
            batch_handlers=batch_handlers,
            filtered=filtered,
            retired=retired,
            batch_size=batch_size,
            batch_linger=self.read_model_linger if read_model else self.batch_linger,
        )

    @property
    def batch_linger(self) -> float:
        """TASKHUB_BATCH_LINGER_MS: how long a consumer or relay waits for more before applying
        or publishing a small batch (shared/events/delivery_batches.py)."""
        default_ms = int(DEFAULT_BATCH_LINGER_SECONDS * 1000)
        linger_ms = env_int(self.settings, "TASKHUB_BATCH_LINGER_MS", default_ms)
        if linger_ms < 0:
            raise ConfigError(f"TASKHUB_BATCH_LINGER_MS must be 0 or more, got {linger_ms}")
        return linger_ms / 1000

    @property
    def read_model_linger(self) -> float:
        """TASKHUB_READ_MODEL_LINGER_MS: the linger of the consumers that follow core's events
        (monitoring, persistence, scheduling). Core's filters take a task's outcome and metrics
        from the worker's report, so these are off every task's path: waiting longer turns the
        batches of a steady stream into larger ones, each costing a fraction per event."""
        default_ms = int(DEFAULT_READ_MODEL_LINGER_SECONDS * 1000)
        linger_ms = env_int(self.settings, "TASKHUB_READ_MODEL_LINGER_MS", default_ms)
        if linger_ms < 0:
            raise ConfigError(f"TASKHUB_READ_MODEL_LINGER_MS must be 0 or more, got {linger_ms}")
        return linger_ms / 1000

    def database_ok(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        self.engine.dispose()


def with_messaging_tables(metadata: MetaData) -> MetaData:
    if "outbox" not in metadata.tables:
        messaging_tables(metadata)
    return metadata


def readiness(ctx: ServiceContext) -> dict[str, Any]:
    checks = {"database": ctx.database_ok(), "broker": ctx.bus.ping()}
    return {"status": "ok" if all(checks.values()) else "unavailable", "checks": checks}
