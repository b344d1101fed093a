"""Issue 13 finding 13: `make run` (SQLite) gave the id of a deleted row to the next one. A
deleted task's id then named a new task, and monitoring's tombstone of the old one hid the new
one's metrics (even another brand's). Ids are never reused now, and the migration that makes it
so keeps every row, the ones that reference the rebuilt tables included."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from services.core.app import create_app
from services.core.container import bootstrap
from services.scheduling.models import Calendar, CalendarAttachment, PeriodicTask, ScheduleRun
from shared.db import make_engine, make_session_factory
from shared.events.inprocess_bus import InProcessBus
from shared.migrations import upgrade
from shared.testing.fixtures import OTHER_BRAND, Auth, make_settings
from shared.testing.responses import json_body


def test_a_deleted_tasks_id_is_never_given_to_the_next_task(tmp_path):
    container = bootstrap(
        make_settings("core", f"sqlite:///{tmp_path}/core.db"), bus=InProcessBus(prefix="t.")
    )
    client, auth = create_app(container=container).test_client(), Auth()
    created = client.post("/tasks/", json={"task_type": "example.noop"}, headers=auth.headers())
    assert client.delete(f"/tasks/{json_body(created)['id']}/", headers=auth.headers()).status_code == 204
    theirs = client.post(
        "/tasks/", json={"task_type": "example.noop"}, headers=auth.headers(brand=OTHER_BRAND)
    )
    assert json_body(theirs)["id"] > json_body(created)["id"]
    container.ctx.dispose()


def _schedule(now: datetime) -> PeriodicTask:
    return PeriodicTask(
        brand_id=9,
        created_by_id="1",
        task_type="x",
        cron_expression="* * * * *",
        created_at=now,
        updated_at=now,
    )


def test_the_migration_keeps_every_row_including_those_referencing_rebuilt_tables(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/scheduling.db")
    upgrade("scheduling", engine, "0001")
    now = datetime(2026, 6, 1, tzinfo=UTC)
    with make_session_factory(engine)() as session:
        task = _schedule(now)
        calendar = Calendar(brand_id=9, name="c", created_at=now, updated_at=now)
        session.add_all([task, calendar])
        session.flush()
        session.add(CalendarAttachment(calendar_id=calendar.id, periodic_task_id=task.id))
        session.add(
            ScheduleRun(
                brand_id=9,
                schedule_kind="periodic",
                schedule_id=task.id,
                planned_time=now,
                fired_at=now,
                trigger="scheduler",
                idempotency_key="k",
                status="pending",
            )
        )
        session.commit()
    upgrade("scheduling", engine)
    with make_session_factory(engine)() as session:
        counts = [
            session.scalar(select(func.count()).select_from(m))
            for m in (PeriodicTask, Calendar, CalendarAttachment, ScheduleRun)
        ]
        assert counts == [
            1,
            1,
            1,
            1,
        ]  # a rebuild with foreign keys on would have cascaded the attachment away
        newest = session.scalar(select(func.max(PeriodicTask.id)))
        session.delete(session.get(PeriodicTask, newest))
        session.commit()
        again = _schedule(now)
        session.add(again)
        session.commit()
        assert again.id > newest
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # switched back on
    engine.dispose()
