"""The inbox forgets: an applied event's id is kept for a retention period (a week by default),
long past any redelivery, then deleted, so the table holds a week of events rather than every
event ever applied. The purge runs when its oldest row is due (computed from the table, never on
a fixed timer), a bounded batch at a time."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, Table, delete, func, select

from .envelope import utcnow

PURGE_BATCH = 10_000


class InboxPurge:
    def __init__(self, engine: Engine, inbox: Table, retention: timedelta) -> None:
        self.engine, self.inbox, self.retention = engine, inbox, retention

    def run_once(self) -> datetime | None:
        """Delete what is past the retention; returns when the next row will be."""
        cutoff = utcnow() - self.retention
        i = self.inbox
        while True:
            with self.engine.begin() as conn:
                doomed = select(i.c.consumer, i.c.event_id).where(i.c.applied_at < cutoff).limit(PURGE_BATCH)
                keys = conn.execute(doomed).all()
                for consumer in {c for c, _ in keys}:
                    ids = [e for c, e in keys if c == consumer]
                    conn.execute(delete(i).where(i.c.consumer == consumer, i.c.event_id.in_(ids)))
            if len(keys) < PURGE_BATCH:
                break
        with self.engine.connect() as conn:
            oldest = conn.execute(select(func.min(i.c.applied_at))).scalar_one_or_none()
        return None if oldest is None else oldest + self.retention
