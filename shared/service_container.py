"""The base of every service's composition root (`services/<name>/container.py`).

A service subclasses `ServiceContainer` (a dataclass whose first field is the `ServiceContext`),
adds its own fields, and supplies what only it knows: its inbox consumers (`consumers()`, each
`ctx.inbox_consumer(name, handlers)`), its own loops (`service_loops()`: dispatchers, watches,
notifiers) and the figures its /metrics reads on scrape (`scraped_figures()`). The plumbing every
service shares lives here once: the bus / session / unit-of-work accessors, the assembly of the
background process (the outbox relay, the inbox purge and the wake-up listener, one loop per
consumer subscription, then the service's loops) and the dead letters of its consumers' queues.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from .background import Loop
from .dead_letters import dead_letter_figures
from .events.bus import EventBus
from .events.inbox_consumer import InboxConsumer
from .prometheus_metrics import ScrapedFigures
from .service_context import ServiceContext
from .unit_of_work import UnitOfWork


@dataclass
class ServiceContainer:
    ctx: ServiceContext
    # loops a test or `make run` adds to the background process (kw_only: subclasses' own fields
    # need no defaults)
    loops_extra: list[Loop] = field(default_factory=list, kw_only=True)

    @property
    def bus(self) -> EventBus:
        return self.ctx.bus

    @property
    def session_factory(self) -> sessionmaker[Session]:
        return self.ctx.session_factory

    def uow(self) -> UnitOfWork:
        return self.ctx.uow()

    def consumers(self) -> list[InboxConsumer]:
        """The service's event consumers, each on its own queue (`queue_of`)."""
        return []

    def queue_of(self, consumer: InboxConsumer) -> str:
        return f"{self.ctx.service}.{consumer.name}"

    def consumer_threads(self, consumer: InboxConsumer) -> int:
        """How many competing loops apply `consumer`'s queue (one unless a service says more)."""
        return 1

    def service_loops(self) -> list[Loop]:
        """The service's own loops (periodic jobs, watches), after the messaging loops."""
        return []

    def scraped_figures(self) -> list[ScrapedFigures]:
        """What the service's web app reads when its /metrics is scraped (built once per app: each
        keeps its last read for a few seconds): its consumers' dead letters, then the service's
        own figures (a subclass adds them to this list)."""
        queues = [self.queue_of(consumer) for consumer in self.consumers()]
        return [dead_letter_figures(self.ctx.service, self.bus, queues)] if queues else []

    def background_loops(self) -> list[Loop]:
        """Everything the service's background process runs (shared/run_service.py)."""
        service = self.ctx.service
        loops = self.ctx.messaging_loops()
        for consumer in self.consumers():
            threads = self.consumer_threads(consumer)
            for index in range(threads):
                subscription = consumer.subscription(self.bus, self.queue_of(consumer))
                suffix = f".{index}" if threads > 1 else ""
                loops.append(Loop(f"{service}.consumer.{consumer.name}{suffix}", subscription.run))
        return loops + self.service_loops() + self.loops_extra
