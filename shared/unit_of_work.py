"""The unit of work: one database transaction that the service layer owns. Events and work
messages written through it land in the outbox in that same transaction, so a change and the news
of it are committed together or not at all (docs/events.md: no lost event).

Outbox rows are gathered while the transaction runs and inserted in one statement at commit (a
request that creates a task and its work order, or a consumer's batch of hundreds of events, pays
one round trip for them). Wake-ups named with `wake` reach this process's loops after the commit
and, on PostgreSQL, every process of the service (shared/wakeups.py)."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Table, insert, text
from sqlalchemy.orm import Session, sessionmaker

from .events.bus import EVENTS_EXCHANGE, WORK_EXCHANGE
from .events.catalog import Event, WorkOrder, work_body
from .events.envelope import Envelope, utcnow
from .wakeups import channel

# the X-Request-ID of the HTTP call, or the id of the event being handled
correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)

OUTBOX_SIGNAL = "outbox"


class SharedTransactionEnded(RuntimeError):
    """A handler committed or rolled back a transaction it shares with other events' handlers:
    that would commit or drop their work too. The batch is applied one event at a time instead."""


class UnitOfWork:
    """`with uow_factory() as uow: ...; uow.commit()` - rolls back unless committed."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        outbox: Table,
        producer: str,
        on_commit: Callable[[Iterable[str]], None] | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._outbox = outbox
        self.producer = producer
        self._on_commit = on_commit
        self._rows: list[dict[str, Any]] = []
        self._wakes: set[str] = set()
        self._shared = False
        self.session: Session

    def __enter__(self) -> UnitOfWork:
        self.session = self._session_factory()
        self._rows, self._wakes = [], set()
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.rollback()
        self.session.close()

    def commit(self) -> None:
        self._check_not_shared("commit")
        self.flush_outbox()
        postgres = self.session.get_bind().dialect.name == "postgresql"
        for name in sorted(self._wakes - {OUTBOX_SIGNAL}) if postgres else ():
            # delivered at commit to the service's other processes (the outbox has a trigger)
            self.session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel(name)})
        self.session.commit()
        woken, self._wakes = self._wakes, set()
        if woken and self._on_commit:
            self._on_commit(woken)

    def rollback(self) -> None:
        self._check_not_shared("rollback")
        self._rows, self._wakes = [], set()
        self.session.rollback()

    def flush_outbox(self) -> None:
        """Insert the rows gathered so far (commit does it; a savepoint's owner may need it)."""
        if self._rows:
            rows, self._rows = self._rows, []
            self.session.execute(insert(self._outbox), rows)

    def wake(self, name: str) -> None:
        """After this transaction commits, wake the loops waiting on `name`."""
        self._wakes.add(name)

    @contextmanager
    def shared_by_many(self) -> Iterator[None]:
        """While inside, the transaction belongs to several events' handlers (a consumer's batch):
        a handler's commit() or rollback() raises SharedTransactionEnded instead."""
        self._shared = True
        try:
            yield
        finally:
            self._shared = False

    def _check_not_shared(self, what: str) -> None:
        if self._shared:
            raise SharedTransactionEnded(f"{what} inside a transaction shared by a batch of events")

    # ---- what goes to the outbox

    def publish(self, event: Event, brand_id: int | None, headers: dict[str, str] | None = None) -> Envelope:
        """Record a typed domain event (shared/events/catalog.py) in the outbox, in this transaction."""
        envelope = Envelope.of(event, brand_id, correlation_id.get())
        self._add(EVENTS_EXCHANGE, event.event_type, envelope.event_id, envelope.to_json(), headers or {})
        return envelope

    def send_work(self, order: WorkOrder, message_id: str) -> None:
        """Queue a work order for the workers of its priority, in this transaction."""
        headers = {"correlation_id": correlation_id.get() or ""}
        self._add(WORK_EXCHANGE, order.priority, message_id, work_body(order), headers)

    def send_raw_work(self, priority: str, message_id: str, body: bytes) -> None:
        """A work message that is not an order to run (the dead-work parking queue)."""
        self._add(WORK_EXCHANGE, priority, message_id, body, {})

    def _add(self, exchange: str, key: str, message_id: str, body: bytes, headers: dict[str, str]) -> None:
        self._rows.append(
            {
                "message_id": message_id,
                "exchange": exchange,
                "routing_key": key,
                "body": body,
                "headers": headers,
                "created_at": utcnow(),
                "attempts": 0,
            }
        )
        self._wakes.add(OUTBOX_SIGNAL)
