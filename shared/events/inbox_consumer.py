"""The idempotent consumer: applies an event and records its id in the same transaction.

Delivery is at least once; the inbox row (consumer, event_id) makes a repeat change nothing.
The handler's return lets the subscription acknowledge, so the ack always follows the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from sqlalchemy import Table, insert, select

from ..prometheus_metrics import EVENTS_CONSUMED, EVENTS_DUPLICATE, EVENTS_FAILED
from ..unit_of_work import UnitOfWork, correlation_id
from .bus import Delivery
from .envelope import Envelope, utcnow

log = logging.getLogger(__name__)

EventHandler = Callable[[UnitOfWork, Envelope], None]


class InboxConsumer:
    def __init__(
        self,
        name: str,
        service: str,
        uow_factory: Callable[[], UnitOfWork],
        inbox: Table,
        handlers: Mapping[str, EventHandler],
    ) -> None:
        self.name, self.service = name, service
        self.uow_factory, self.inbox, self.handlers = uow_factory, inbox, dict(handlers)

    @property
    def bindings(self) -> list[str]:
        return sorted(self.handlers)

    def __call__(self, delivery: Delivery) -> None:
        envelope = Envelope.from_json(delivery.body)
        handler = self.handlers.get(envelope.event_type)
        if handler is None:
            return
        token = correlation_id.set(envelope.event_id)
        try:
            self.apply(envelope, handler)
        except Exception:
            EVENTS_FAILED.labels(self.service, self.name, envelope.event_type).inc()
            log.exception(
                "event handler failed",
                extra={"event_type": envelope.event_type, "event_id": envelope.event_id},
            )
            raise
        finally:
            correlation_id.reset(token)

    def apply(self, envelope: Envelope, handler: EventHandler) -> bool:
        """Apply once. Returns False when the event was already applied."""
        i = self.inbox
        with self.uow_factory() as uow:
            seen = uow.session.execute(
                select(i.c.event_id).where(i.c.consumer == self.name, i.c.event_id == envelope.event_id)
            ).first()
            if seen:
                EVENTS_DUPLICATE.labels(self.service, self.name).inc()
                return False
            uow.session.execute(
                insert(i).values(consumer=self.name, event_id=envelope.event_id, applied_at=utcnow())
            )
            handler(uow, envelope)
            uow.commit()
        EVENTS_CONSUMED.labels(self.service, self.name, envelope.event_type).inc()
        return True
