"""The idempotent consumer: applies events and records their ids in the same transaction.

Delivery is at least once; the inbox row (consumer, event_id) makes a repeat change nothing.
The handler's return lets the subscription acknowledge, so the ack always follows the commit.

A subscription hands over the deliveries it already holds as one batch (`apply_batch`): one
transaction, one inbox insert, the handlers in delivery order, one commit. A batch that fails
commits nothing; the subscription then applies its deliveries one by one, so a poison event is
isolated exactly as before.

Two kinds of handler:
- an event handler takes one event (`handler(uow, envelope)`), through the ORM: for events that
  come a few at a time;
- a batch handler takes a run of consecutive events of its types at once
  (`handler(uow, [envelope, ...])`) and applies them with set-based statements (a few statements
  per batch, not per event): for the hot events of the task pipeline. It must apply them as if one
  by one in the given order (the ordering rules are applied in memory).
Both see what the other wrote: the session is flushed and expired between runs of different kinds.

A database that cannot be reached is not the events' fault: the batch raises TransientFailure, the
subscription keeps its deliveries (they are not counted towards the dead-letter limit) and tries
again once the database answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from itertools import groupby

from sqlalchemy import Table

from ..db import unreachable, upsert
from ..prometheus_metrics import EVENTS_CONSUMED, EVENTS_DUPLICATE, EVENTS_FAILED
from ..unit_of_work import UnitOfWork, correlation_id
from .bus import Delivery, EventBus, FilteredBindings, Subscription, TransientFailure
from .envelope import Envelope, utcnow

log = logging.getLogger(__name__)

EventHandler = Callable[[UnitOfWork, Envelope], None]
BatchEventHandler = Callable[[UnitOfWork, Sequence[Envelope]], None]


class InboxConsumer:
    def __init__(
        self,
        name: str,
        service: str,
        uow_factory: Callable[[], UnitOfWork],
        inbox: Table,
        handlers: Mapping[str, EventHandler],
        *,
        batch_handlers: Mapping[str, BatchEventHandler] | None = None,
        filtered: FilteredBindings | None = None,
        retired: Sequence[str] = (),
        batch_size: int = 1,
        batch_linger: float = 0.0,
    ) -> None:
        self.name, self.service = name, service
        self.uow_factory, self.inbox = uow_factory, inbox
        self.handlers = dict(handlers)
        self.batch_handlers = dict(batch_handlers or {})
        overlap = set(self.handlers) & set(self.batch_handlers)
        if overlap:
            raise ValueError(f"events with two handlers: {sorted(overlap)}")
        # event type -> headers it must carry to be delivered (see EventBus.subscription)
        self.filtered = dict(filtered or {})
        self.retired = tuple(retired)  # see EventBus.subscription
        self.batch_size, self.batch_linger = batch_size, batch_linger

    @property
    def bindings(self) -> list[str]:
        return sorted((set(self.handlers) | set(self.batch_handlers)) - set(self.filtered))

    def subscription(self, bus: EventBus, queue: str) -> Subscription:
        """This consumer on `queue`, fed batches of up to `batch_size` deliveries."""
        return bus.subscription(
            queue,
            self.bindings,
            self,
            filtered=self.filtered,
            retired=self.retired,
            batch_handler=self.apply_batch,
            batch_size=self.batch_size,
            batch_linger=self.batch_linger,
            prefetch=max(20, 2 * self.batch_size),
        )

    def _known(self, event_type: str) -> bool:
        return event_type in self.handlers or event_type in self.batch_handlers

    def __call__(self, delivery: Delivery) -> None:
        envelope = Envelope.from_json(delivery.body)
        if not self._known(envelope.event_type):
            return
        token = correlation_id.set(envelope.event_id)
        try:
            self.apply([envelope])
        except TransientFailure:
            raise
        except Exception:
            EVENTS_FAILED.labels(self.service, self.name, envelope.event_type).inc()
            log.exception(
                "event handler failed",
                extra={"event_type": envelope.event_type, "event_id": envelope.event_id},
            )
            raise
        finally:
            correlation_id.reset(token)

    def apply_batch(self, deliveries: Sequence[Delivery]) -> None:
        """Apply every delivery in one transaction, or none of them (the exception says why;
        failures are counted when the subscription applies them one by one)."""
        envelopes = [Envelope.from_json(delivery.body) for delivery in deliveries]
        # events without a handler (bindings are patterns) cost no transaction
        self.apply([e for e in envelopes if self._known(e.event_type)])

    def apply(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Apply the events not applied before, in order, in one transaction. Returns those applied."""
        if not envelopes:
            return []
        try:
            return self._apply_all(envelopes)
        except Exception as exc:
            if unreachable(exc):
                raise TransientFailure(f"database unreachable: {type(exc).__name__}") from exc
            raise

    def _apply_all(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        with self.uow_factory() as uow:
            fresh = self._record(uow, [e.event_id for e in envelopes])
            applied: list[Envelope] = []
            for envelope in envelopes:
                if envelope.event_id in fresh:
                    fresh.discard(envelope.event_id)  # a second copy in the same batch is a repeat
                    applied.append(envelope)
            shared = len(applied) > 1
            with uow.shared_by_many() if shared else nullcontext():
                runs = groupby(applied, key=lambda e: self.batch_handlers.get(e.event_type))
                for batch_handler, run in runs:
                    events = list(run)
                    if batch_handler is not None:
                        batch_handler(uow, events)
                    else:
                        for envelope in events:
                            self._apply_one(uow, envelope, shared)
                    if shared:
                        # the next handler reads what this one wrote from the database, as it
                        # would in a transaction of its own (not attributes cached in the session)
                        uow.session.flush()
                        uow.session.expire_all()
            uow.commit()
        for envelope in applied:
            EVENTS_CONSUMED.labels(self.service, self.name, envelope.event_type).inc()
        if len(envelopes) > len(applied):
            EVENTS_DUPLICATE.labels(self.service, self.name).inc(len(envelopes) - len(applied))
        return applied

    def _apply_one(self, uow: UnitOfWork, envelope: Envelope, shared: bool) -> None:
        token = correlation_id.set(envelope.event_id)
        try:
            self.handlers[envelope.event_type](uow, envelope)
        finally:
            correlation_id.reset(token)
        if shared:
            uow.session.flush()
            uow.session.expire_all()

    def _record(self, uow: UnitOfWork, event_ids: Sequence[str]) -> set[str]:
        """Insert the inbox rows of the ids not seen before, in one statement; returns them.
        A concurrent consumer recording the same id does not fail: it simply is not fresh here."""
        now = utcnow()
        rows = [{"consumer": self.name, "event_id": e, "applied_at": now} for e in dict.fromkeys(event_ids)]
        statement = upsert(uow.session.get_bind(), self.inbox).on_conflict_do_nothing()
        # rows as parameters (one multi-row statement all the same): the statement compiles once
        # and is cached, where rows baked into it would compile anew for every batch
        inserted = uow.session.execute(statement.returning(self.inbox.c.event_id), rows).scalars().all()
        return set(inserted)
