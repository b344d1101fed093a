"""The inbox keeps an applied event's id for its retention, then forgets it; the purge says when
it is next needed (the oldest row's time), so it never runs on a fixed timer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import MetaData, func, insert, select

from shared.db import make_engine, messaging_tables
from shared.events.envelope import utcnow
from shared.events.inbox_purge import InboxPurge


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path}/inbox.db"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_old_ids_are_forgotten_and_the_next_purge_is_when_the_oldest_left_expires(engine):
    metadata = MetaData()
    _, inbox = messaging_tables(metadata)
    metadata.create_all(engine)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(inbox),
            [
                {"consumer": "c", "event_id": "old-1", "applied_at": now - timedelta(days=9)},
                {"consumer": "d", "event_id": "old-2", "applied_at": now - timedelta(days=8)},
                {"consumer": "c", "event_id": "fresh", "applied_at": now - timedelta(days=2)},
            ],
        )
    due = InboxPurge(engine, inbox, timedelta(days=7)).run_once()
    with engine.connect() as conn:
        assert conn.execute(select(inbox.c.event_id)).scalars().all() == ["fresh"]
    assert due is not None and abs((due - (now + timedelta(days=5))).total_seconds()) < 5

    with engine.begin() as conn:
        conn.execute(inbox.delete())
    assert InboxPurge(engine, inbox, timedelta(days=7)).run_once() is None  # nothing to wait for
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(inbox)).scalar_one() == 0
