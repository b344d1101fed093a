"""The outbox relay: publishes committed outbox rows with publisher confirms, then marks them.

It selects rows by `published_at IS NULL`, never by "id greater than the last one sent": a row
whose transaction commits late (its id was allocated earlier) is still found on the next pass.
On PostgreSQL rows are locked with FOR UPDATE SKIP LOCKED, so several relays can run (replicas)
without publishing the same row twice in normal operation. A crash between the confirm and the
mark re-publishes a row: delivery is at least once and consumers deduplicate (inbox).
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from threading import Event as StopSignal

from sqlalchemy import Engine, Table, delete, func, select, update

from ..db import is_postgres
from ..prometheus_metrics import EVENTS_PUBLISHED, OUTBOX_BACKLOG, PUBLISH_FAILURES
from ..unit_of_work import Wakeup
from .bus import BusUnavailable, EventBus, OutgoingMessage
from .envelope import utcnow

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        engine: Engine,
        outbox: Table,
        bus: EventBus,
        service: str,
        *,
        batch_size: int = 200,
        poll_interval: float = 0.05,
        retention: timedelta = timedelta(hours=24),
        wakeup: Wakeup | None = None,
    ) -> None:
        self.engine, self.outbox, self.bus, self.service = engine, outbox, bus, service
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retention = retention
        self.wakeup = wakeup or Wakeup()
        self._last_purge = utcnow()

    def publish_pending(self) -> int:
        """One pass: publish up to batch_size rows. Returns how many were published."""
        o = self.outbox
        query = (
            select(o.c.id, o.c.message_id, o.c.exchange, o.c.routing_key, o.c.body, o.c.headers)
            .where(o.c.published_at.is_(None))
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
            try:
                self.bus.publish(messages)
            except BusUnavailable:
                PUBLISH_FAILURES.labels(self.service).inc()
                conn.execute(
                    update(o).where(o.c.id.in_([r.id for r in rows])).values(attempts=o.c.attempts + 1)
                )
                raise
            conn.execute(update(o).where(o.c.id.in_([r.id for r in rows])).values(published_at=utcnow()))
        for message in messages:
            EVENTS_PUBLISHED.labels(self.service, message.routing_key).inc()
        return len(rows)

    def backlog(self) -> int:
        with self.engine.connect() as conn:
            count = conn.execute(
                select(func.count()).select_from(self.outbox).where(self.outbox.c.published_at.is_(None))
            ).scalar_one()
        OUTBOX_BACKLOG.labels(self.service).set(count)
        return int(count)

    def purge_published(self) -> None:
        """Published rows are kept for a day (for operators), then deleted so the table stays small."""
        cutoff = utcnow() - self.retention
        with self.engine.begin() as conn:
            conn.execute(delete(self.outbox).where(self.outbox.c.published_at < cutoff))

    def run(self, stop: StopSignal) -> None:
        failures = 0
        while not stop.is_set():
            try:
                published = self.publish_pending()
                failures = 0
            except BusUnavailable:
                failures += 1
                delay = min(5.0, 0.1 * 2**failures) * random.uniform(0.5, 1.0)
                log.warning("outbox relay: broker unavailable, retrying in %.2fs", delay)
                stop.wait(delay)
                continue
            except Exception:
                failures += 1
                log.exception("outbox relay: pass failed")
                stop.wait(min(5.0, 0.1 * 2**failures))
                continue
            if published == self.batch_size:
                continue  # more is waiting: no pause
            self._housekeeping()
            self.wakeup.wait(self.poll_interval)

    def _housekeeping(self) -> None:
        now = utcnow()
        if now - self._last_purge > timedelta(minutes=5):
            self._last_purge = now
            try:
                self.purge_published()
                self.backlog()
            except Exception:
                log.exception("outbox relay: housekeeping failed")
