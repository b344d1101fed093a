"""The idempotent consumer: applies events and records their ids in the same transaction.

Delivery is at least once; the inbox row (consumer, event_id) makes a repeat change nothing.
The handler's return lets the subscription acknowledge, so the ack always follows the commit.

A subscription hands over the deliveries it already holds as one batch (`apply_batch`): one
transaction, one inbox insert, each handler in delivery order, one commit. Per-event transactions
were most of the consumers' cost (a round trip to begin, check the inbox, insert it and commit, for
every event of every service). A batch that fails commits nothing; the subscription then applies
its deliveries one by one (`__call__`), so a poison event is isolated exactly as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext

from sqlalchemy import Table, insert, select

from ..prometheus_metrics import EVENTS_CONSUMED, EVENTS_DUPLICATE, EVENTS_FAILED
from ..unit_of_work import UnitOfWork, correlation_id
from .bus import Delivery, EventBus, Subscription
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
        *,
        batch_size: int = 1,
    ) -> None:
        self.name, self.service = name, service
        self.uow_factory, self.inbox, self.handlers = uow_factory, inbox, dict(handlers)
        self.batch_size = batch_size

    @property
    def bindings(self) -> list[str]:
        return sorted(self.handlers)

    def subscription(self, bus: EventBus, queue: str) -> Subscription:
        """This consumer on `queue`, fed batches of up to `batch_size` deliveries."""
        return bus.subscription(
            queue, self.bindings, self, batch_handler=self.apply_batch, batch_size=self.batch_size
        )

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
        return bool(self._apply_all([(envelope, handler)]))

    def apply_batch(self, deliveries: Sequence[Delivery]) -> None:
        """Apply every delivery in one transaction, or none of them (the exception says why;
        failures are counted when the subscription applies them one by one)."""
        envelopes = [Envelope.from_json(delivery.body) for delivery in deliveries]
        # events without a handler (bindings are patterns) cost no transaction
        self._apply_all(
            [(e, self.handlers[e.event_type]) for e in envelopes if e.event_type in self.handlers]
        )

    def _apply_all(self, events: Sequence[tuple[Envelope, EventHandler]]) -> list[Envelope]:
        """Apply the events not applied before, in order, in one transaction. Returns those applied."""
        if not events:
            return []
        applied: list[Envelope] = []
        shared = len(events) > 1
        with self.uow_factory() as uow:
            fresh = self._record(uow, [envelope.event_id for envelope, _ in events])
            with uow.shared_by_many() if shared else nullcontext():
                for envelope, handler in events:
                    if envelope.event_id not in fresh:
                        continue
                    fresh.discard(envelope.event_id)  # a second copy in the same batch is a repeat
                    token = correlation_id.set(envelope.event_id)
                    try:
                        handler(uow, envelope)
                    finally:
                        correlation_id.reset(token)
                    if shared:
                        # the next handler reads what this one wrote, from the database, as it
                        # would in a transaction of its own (not attributes cached in the session)
                        uow.session.flush()
                        uow.session.expire_all()
                    applied.append(envelope)
            uow.commit()
        for envelope in applied:
            EVENTS_CONSUMED.labels(self.service, self.name, envelope.event_type).inc()
        if len(events) > len(applied):
            EVENTS_DUPLICATE.labels(self.service, self.name).inc(len(events) - len(applied))
        return applied

    def _record(self, uow: UnitOfWork, event_ids: Sequence[str]) -> set[str]:
        """Insert the inbox rows of the ids not seen before (one query, one insert); returns them.
        A concurrent consumer recording the same id makes the insert (and the batch) fail."""
        i = self.inbox
        seen = set(
            uow.session.scalars(
                select(i.c.event_id).where(i.c.consumer == self.name, i.c.event_id.in_(set(event_ids)))
            )
        )
        fresh = list(dict.fromkeys(e for e in event_ids if e not in seen))
        if fresh:
            now = utcnow()
            uow.session.execute(
                insert(i), [{"consumer": self.name, "event_id": e, "applied_at": now} for e in fresh]
            )
        return set(fresh)
