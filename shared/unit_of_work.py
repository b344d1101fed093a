"""The unit of work: one database transaction that the service layer owns. Events and work
messages written through it land in the outbox in that same transaction, so a change and the news
of it are committed together or not at all (EVENTS.md: no lost event)."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session, sessionmaker

from .events.bus import EVENTS_EXCHANGE, WORK_EXCHANGE
from .events.envelope import Envelope, utcnow

# the X-Request-ID of the HTTP call, or the id of the event being handled
correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)


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
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._outbox = outbox
        self.producer = producer
        self._on_commit = on_commit
        self._wrote_outbox = False
        self._shared = False
        self.session: Session

    def __enter__(self) -> UnitOfWork:
        self.session = self._session_factory()
        self._wrote_outbox = False
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.rollback()
        self.session.close()

    def commit(self) -> None:
        self._check_not_shared("commit")
        self.session.commit()
        if self._wrote_outbox and self._on_commit:
            self._on_commit()
        self._wrote_outbox = False

    def rollback(self) -> None:
        self._check_not_shared("rollback")
        self.session.rollback()

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

    def emit(self, event_type: str, brand_id: int | None, data: dict[str, Any]) -> Envelope:
        """Record a domain event in the outbox, in this transaction."""
        envelope = Envelope(
            event_type=event_type,
            producer=self.producer,
            brand_id=brand_id,
            data=data,
            correlation_id=correlation_id.get(),
        )
        self._write(EVENTS_EXCHANGE, event_type, envelope.event_id, envelope.to_json(), {})
        return envelope

    def emit_many(self, events: Iterable[tuple[str, int | None, dict[str, Any]]]) -> list[Envelope]:
        """Record many events (event_type, brand_id, data) in one batched insert, in this
        transaction: a scheduler firing hundreds of slots per transaction needs one round trip."""
        envelopes = [
            Envelope(
                event_type=t, producer=self.producer, brand_id=b, data=d, correlation_id=correlation_id.get()
            )
            for t, b, d in events
        ]
        if envelopes:
            now = utcnow()
            self.session.execute(
                insert(self._outbox),
                [
                    {
                        "message_id": e.event_id,
                        "exchange": EVENTS_EXCHANGE,
                        "routing_key": e.event_type,
                        "body": e.to_json(),
                        "headers": {},
                        "created_at": now,
                        "attempts": 0,
                    }
                    for e in envelopes
                ],
            )
            self._wrote_outbox = True
        return envelopes

    def send_work(self, priority: str, message_id: str, body: bytes) -> None:
        """Queue a work message for the workers of `priority`, in this transaction."""
        headers = {"correlation_id": correlation_id.get() or ""}
        self._write(WORK_EXCHANGE, priority, message_id, body, headers)

    def _write(self, exchange: str, key: str, message_id: str, body: bytes, headers: dict) -> None:
        self.session.execute(
            insert(self._outbox).values(
                message_id=message_id,
                exchange=exchange,
                routing_key=key,
                body=body,
                headers=headers,
                created_at=utcnow(),
                attempts=0,
            )
        )
        self._wrote_outbox = True


class Wakeup:
    """A process-local nudge from committers to the relay, so that events leave at once instead of
    at the next poll. Across processes the relay still polls."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)
        self._event.clear()
