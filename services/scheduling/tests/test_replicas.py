"""Exactly one fire per slot on real PostgreSQL: two scheduler replicas (threads, each with its own
engine) and execute-ready race over hundreds of due slots; a crash before commit leaves nothing."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select

from services.scheduling.firing import fire_due
from services.scheduling.models import SCHEDULE_DEFAULTS, PeriodicTask, ScheduleRun
from services.scheduling.scheduler import Scheduler
from shared.migrations import upgrade

from .conftest import FakeClock, build_container

SCHEDULES = 300
T0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)


def seed(container, count):
    rows = [
        {
            "brand_id": 9 + i % 2,
            "brand_name": "b",
            "created_by_id": "1",
            "created_by_username": "u",
            "task_type": "example.noop",
            **SCHEDULE_DEFAULTS,
            "next_planned_at": T0,
            "next_run_at": T0,
            "created_at": T0 - timedelta(hours=1),
            "updated_at": T0 - timedelta(hours=1),
            "context_data": {},
            "schedule_config": {},
            "cron_expression": "* * * * *",
        }
        for i in range(count)
    ]
    with container.ctx.engine.begin() as conn:
        conn.execute(insert(PeriodicTask), rows)


def counts(container):
    outbox = container.ctx.outbox
    with container.ctx.engine.connect() as conn:
        runs = conn.execute(
            select(func.count(), func.count(func.distinct(ScheduleRun.idempotency_key)))
        ).one()
        events = conn.execute(
            select(func.count()).select_from(outbox).where(outbox.c.routing_key == "schedule.fired")
        ).scalar_one()
        executions = conn.execute(select(func.sum(PeriodicTask.executions_count))).scalar_one()
    return runs[0], runs[1], events, executions


def test_two_replicas_and_execute_ready_fire_each_slot_once(postgres_url):
    clock = FakeClock(T0 + timedelta(seconds=1))
    replicas = [build_container(postgres_url, clock) for _ in range(3)]
    for container in replicas:  # small batches: many interleaved claims
        container.policy = replace(container.policy, batch_size=25)
    upgrade("scheduling", replicas[0].ctx.engine)
    seed(replicas[0], SCHEDULES)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def replica(container):
        try:
            barrier.wait()
            Scheduler(container).tick()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def execute_ready(container):
        try:
            barrier.wait()
            for brand in (9, 10):
                while True:
                    with container.uow() as uow:
                        batch = fire_due(
                            uow,
                            PeriodicTask,
                            clock(),
                            container.policy,
                            brand_id=brand,
                            trigger="execute_ready",
                        )
                        uow.commit()
                    if batch.claimed == 0:
                        break
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    for minute in range(2):
        threads = [
            threading.Thread(target=replica, args=(replicas[0],)),
            threading.Thread(target=replica, args=(replicas[1],)),
            threading.Thread(target=execute_ready, args=(replicas[2],)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        expected = SCHEDULES * (minute + 1)
        assert counts(replicas[0]) == (expected, expected, expected, expected)
        clock.advance(seconds=60)
    with replicas[0].session_factory() as session:
        triggers = set(session.scalars(select(ScheduleRun.trigger).distinct()))
    assert triggers <= {"scheduler", "execute_ready"}
    for container in replicas:
        container.ctx.dispose()


def test_a_crash_before_commit_fires_nothing_and_the_slot_fires_later(postgres_url):
    clock = FakeClock(T0 + timedelta(seconds=1))
    container = build_container(postgres_url, clock)
    upgrade("scheduling", container.ctx.engine)
    seed(container, 10)
    try:
        with container.uow() as uow:
            assert len(fire_due(uow, PeriodicTask, clock(), container.policy).runs) == 10
            raise RuntimeError("process killed before commit")
    except RuntimeError:
        pass
    assert counts(container) == (0, 0, 0, 0)
    assert Scheduler(container).tick() == 10
    assert counts(container) == (10, 10, 10, 10)
    container.ctx.dispose()
