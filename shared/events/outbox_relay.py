"""The outbox relay: publishes committed outbox rows with publisher confirms, then deletes them.

It sleeps until a commit wrote outbox rows (the "outbox" wake-up: a NOTIFY from the outbox's
trigger on PostgreSQL, an in-process signal otherwise), then publishes until the outbox is empty:
a batch goes out at once and its confirms are awaited once. Rows are selected in id order with
FOR UPDATE SKIP LOCKED on PostgreSQL, so several relays can run (replicas) without publishing the
same row twice in normal operation; a row whose transaction commits late (its id was allocated
earlier) is still found, since the relay never remembers "the last id sent". A crash between the
confirm and the delete re-publishes a row: delivery is at least once and consumers deduplicate.

Published rows are deleted rather than marked: an update would write a new row version and new
index entries per message, only for a later purge to delete them anyway.
"""

from __future__ import annotations

import logging
from threading import Event as StopSignal

from sqlalchemy import Engine, Table, delete, func, select, update

from ..db import is_postgres
from ..prometheus_metrics import EVENTS_PUBLISHED, OUTBOX_BACKLOG, PUBLISH_FAILURES
from ..wakeups import STOP_CHECK_SECONDS, Signal
from .bus import BusUnavailable, EventBus, OutgoingMessage

log = logging.getLogger(__name__)

BATCH_SIZE = 500
RETRY_FIRST_DELAY = 0.1
RETRY_MAX_DELAY = 5.0


class OutboxRelay:
    def __init__(
        self,
        engine: Engine,
        outbox: Table,
        bus: EventBus,
        service: str,
        wakeup: Signal | None = None,
        *,
        batch_size: int = BATCH_SIZE,
        linger: float = 0.0,
    ) -> None:
        self.engine, self.outbox, self.bus, self.service = engine, outbox, bus, service
        self.wakeup = wakeup or Signal()
        self.batch_size = batch_size
        # woken, wait this long for other commits' rows: one pass (a transaction and a confirm
        # wait) for several of them
        self.linger = linger

    def publish_pending(self) -> int:
        """One pass: publish up to batch_size rows. Returns how many were published."""
        o = self.outbox
        query = (
            select(o.c.id, o.c.message_id, o.c.exchange, o.c.routing_key, o.c.body, o.c.headers)
            .order_by(o.c.id)
            .limit(self.batch_size)
        )
        if is_postgres(self.engine):
            query = query.with_for_update(skip_locked=True)
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
            if not rows:
                return 0
            messages = [
                OutgoingMessage(
                    exchange=row.exchange,
                    routing_key=row.routing_key,
                    body=bytes(row.body),
                    message_id=row.message_id,
                    headers=dict(row.headers or {}),
                )
                for row in rows
            ]
            ids = [row.id for row in rows]
            try:
                self.bus.publish(messages)
            except BusUnavailable:
                PUBLISH_FAILURES.labels(self.service).inc()
                conn.execute(update(o).where(o.c.id.in_(ids)).values(attempts=o.c.attempts + 1))
                raise
            conn.execute(delete(o).where(o.c.id.in_(ids)))
        for message in messages:
            EVENTS_PUBLISHED.labels(self.service, message.routing_key).inc()
        return len(rows)

    def backlog(self) -> int:
        with self.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(self.outbox)).scalar_one()
        OUTBOX_BACKLOG.labels(self.service).set(count)
        return int(count)

    def run(self, stop: StopSignal) -> None:
        failures = 0
        while not stop.is_set():
            try:
                published = self.publish_pending()
                failures = 0
            except Exception as exc:
                failures += 1
                delay = min(RETRY_MAX_DELAY, RETRY_FIRST_DELAY * 2**failures)
                if isinstance(exc, BusUnavailable):
                    log.warning("outbox relay: broker unavailable (%s), retrying in %.2fs", exc, delay)
                else:
                    log.exception("outbox relay: pass failed, retrying in %.2fs", delay)
                stop.wait(delay)
                continue
            if published == self.batch_size:
                continue  # more is waiting: no pause
            if published:
                OUTBOX_BACKLOG.labels(self.service).set(0)
            # nothing left: sleep until a commit writes to the outbox
            while not stop.is_set() and not self.wakeup.wait(STOP_CHECK_SECONDS):
                pass
            if self.linger:
                stop.wait(self.linger)
