"""scheduling follows core's task events a batch at a time with set-based statements, exactly as
one by one; it receives the events of periodic tasks only (through the real broker, core and
scheduling together); and the scheduler sleeps until a slot is due or a change wakes it, sending
no query while idle."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text

from services.scheduling import read_model
from services.scheduling.app import SERVICE, create_app
from services.scheduling.models import CronJob, PeriodicTask, ScheduleRun
from services.scheduling.scheduler import Scheduler, scheduler_loops
from shared.background import Loop, start_loops
from shared.db import make_engine
from shared.events.catalog import (
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskRetried,
    TaskStarted,
)
from shared.events.envelope import Envelope
from shared.events.rabbitmq_bus import RabbitMQBus
from shared.service_app import build_embedded
from shared.testing.fixtures import make_settings, wait_until
from shared.testing.statements import statements_of

from .conftest import NO_CORE, FakeClock, P, build_container, core_event, deliver, emptied, task_created

J = "/tasks/scheduled/cron-jobs/"


def at(clock: FakeClock, text: str) -> None:
    clock.set(datetime.fromisoformat(text).replace(tzinfo=UTC))


def runs(container: Any) -> list[ScheduleRun]:
    with container.session_factory() as session:
        return list(session.scalars(select(ScheduleRun).order_by(ScheduleRun.id)))


class TestBatches:
    def test_a_batch_of_task_created_is_one_lookup_and_one_update(
        self, container, clock, scheduler, make_schedule
    ):
        make_schedule()
        clock.advance(seconds=60)
        scheduler.tick()
        clock.advance(seconds=60)
        scheduler.tick()
        first, second = runs(container)
        created = [task_created(1000 + n, f"manual:{n}") for n in range(198)] + [
            task_created(2000, first.idempotency_key),
            task_created(2001, second.idempotency_key),
        ]
        with statements_of(container.ctx.engine) as log:
            deliver(container, *created)
        assert log.count("UPDATE schedule_runs") == 1  # the two runs whose slots created a task
        assert log.count() == 3, log.statements  # + the inbox's insert and the runs' lookup
        assert [(r.task_pk, r.task_ref) for r in runs(container)] == [
            (2000, "task_2000"),
            (2001, "task_2001"),
        ]

    def test_a_batch_ends_as_one_by_one(self, container, clock, client, auth, sqlite_url):
        """The same events, in one batch here and one at a time on a twin database: the same
        runs and schedules."""
        twin = build_container(sqlite_url("twin"), clock)
        twin_client = create_app(container=twin).test_client()
        for api in (client, twin_client):
            for url, body in (
                (P, {"cron_expression": "* * * * *"}),
                (J, {"name": "c", "frequency": "minutely"}),
            ):
                answer = api.post(url, json={"task_type": "example.noop", **body}, headers=auth.headers())
                assert answer.status_code == 201, answer.json
        for minute in ("12:01", "12:02", "12:03"):
            at(clock, f"2026-06-01T{minute}:00")
            assert Scheduler(container).tick() == Scheduler(twin).tick() == 2
        keys = {(r.schedule_kind, r.planned_time.minute): r.idempotency_key for r in runs(container)}
        envelopes = [Envelope.of(event, 9) for event in story(keys)]
        container.consumers()[0].apply(envelopes)
        for envelope in envelopes:
            twin.consumers()[0].apply([envelope])
        assert snapshot(container) == snapshot(twin)
        twin.ctx.dispose()


def story(keys: dict[tuple[str, int], str]) -> list[Any]:
    """Tasks 101-103 are the periodic task's runs at 12:01-12:03, 201-203 the cron job's."""

    def key(kind: str, minute: int) -> str:
        return keys[(kind, minute)]

    started = "2026-06-01T12:01:03.000Z"
    return [
        task_created(101, key("periodic", 1)),
        task_created(201, key("cron", 1)),
        core_event(TaskStarted, 101, started_at=started),
        core_event(TaskCompleted, 101, completed_at="2026-06-01T12:01:09.000Z"),
        core_event(TaskStarted, 201),
        core_event(TaskFailed, 201, will_retry=True),  # not over: an automatic retry follows
        core_event(TaskFailed, 201, attempt=2, completed_at="2026-06-01T12:01:30.000Z"),
        task_created(102, key("periodic", 2)),
        task_created(202, key("cron", 2)),
        core_event(TaskRetried, 201),  # a manual retry: running again, no longer counted failed
        core_event(TaskCompleted, 201, attempt=3),
        core_event(TaskCancelled, 102),
        core_event(TaskStarted, 102),  # late: the run stays cancelled
        core_event(TaskCompleted, 202, started_at="2026-06-01T12:02:01.000Z"),  # short: no started
        task_created(103, key("periodic", 3)),
        task_created(203, key("cron", 3)),
        core_event(TaskFailed, 103),
        core_event(TaskStarted, 103),
        core_event(TaskCancelled, 203),
        core_event(TaskCompleted, 999),  # no run of ours
    ]


def snapshot(container: Any) -> dict[str, Any]:
    with container.session_factory() as session:
        return {
            "runs": [
                (r.id, r.task_pk, r.task_ref, r.status, r.started_at, r.finished_at, r.cancel_requested_at)
                for r in session.scalars(select(ScheduleRun).order_by(ScheduleRun.id))
            ],
            "periodic": [(s.id, s.last_run_status) for s in session.scalars(select(PeriodicTask))],
            "cron": [
                (s.id, s.last_run_status, s.successful_executions, s.failed_executions)
                for s in session.scalars(select(CronJob))
            ],
        }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_only_a_periodic_tasks_events_reach_scheduling_through_the_broker(
    database_url, sqlite_url, clock, amqp_url, bus_prefix, auth
):
    """core marks every event of a task a schedule made with a header, and scheduling's queue
    is bound through it: a plain task, created and cancelled through core, never reaches it; a
    periodic one's task.created links its run and its task.cancelled ends it. The queue starts
    with the direct bindings of an earlier version, which its declaration removes."""
    from services.core.app import create_app as create_core_app
    from services.core.container import bootstrap as bootstrap_core

    bus = RabbitMQBus(amqp_url, prefix=bus_prefix)
    queue = "scheduling.scheduling"
    bus.subscription(queue, ["task.created", "task.updated", "task.deleted"], lambda d: None)  # as before
    seen: list[tuple[str, int, str]] = []  # every task event core published: (type, task, event id)
    spy = bus.subscription(
        "test-spy",
        ["task.#"],
        lambda d: seen.append((d.routing_key, Envelope.from_json(d.body).data["id"], d.message_id or "")),
    )
    core = bootstrap_core(make_settings("core", sqlite_url("core")), bus=bus)
    container = build_container(database_url, clock, bus=bus)
    core_client, client = (
        create_core_app(container=core).test_client(),
        create_app(container=container).test_client(),
    )
    stop = threading.Event()
    threads = start_loops(
        [*core.background_loops(), *container.background_loops(), Loop("spy", spy.run)], stop
    )
    try:
        plain = core_client.post("/tasks/", json={"task_type": "example.noop"}, headers=auth.headers()).json
        assert plain is not None and "id" in plain, plain
        assert core_client.post(f"/tasks/{plain['id']}/cancel/", headers=auth.headers()).status_code == 200
        made = client.post(
            P, json={"task_type": "example.noop", "cron_expression": "* * * * *"}, headers=auth.headers()
        )
        assert made.status_code == 201, made.json
        clock.advance(seconds=60)
        Scheduler(container).tick()  # schedule.fired: core makes the run's task
        [run] = wait_until(lambda: [r for r in runs(container) if r.task_pk], 15, message="the run linked")
        assert core_client.post(f"/tasks/{run.task_pk}/cancel/", headers=auth.headers()).status_code == 200
        wait_until(lambda: runs(container)[0].status == "cancelled", 15, message="the run cancelled")
        expected = {("task.created", plain["id"]), ("task.cancelled", plain["id"])}
        expected |= {("task.created", run.task_pk), ("task.cancelled", run.task_pk)}
        wait_until(
            lambda: expected <= {(kind, task) for kind, task, _ in seen}, 15, message="the spy saw all"
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    inbox = container.ctx.inbox
    with container.ctx.engine.connect() as conn:
        applied = set(conn.execute(select(inbox.c.event_id)).scalars())
    # the plain task's events were published first (FIFO): had they been routed, they were here
    handled = set(read_model.batch_handlers())
    assert applied == {event_id for kind, task, event_id in seen if task == run.task_pk and kind in handled}
    assert not {event_id for _, task, event_id in seen if task == plain["id"]} & applied
    figures = bus.queue_figures(bus.prefix + queue)
    assert figures is not None and figures.ready == 0  # nothing left unread either
    container.ctx.dispose()
    core.ctx.dispose()
    bus.close()


def listening(url: str) -> bool:
    """Has a wake-up listener of this database run its LISTEN?"""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


class TestTheSchedulerSleeps:
    """It sleeps until the next slot it knows of; a schedule created meanwhile wakes it (a NOTIFY
    from another process on PostgreSQL, the process's own signal in `make run`), and while it
    sleeps it sends no query. The test's clock does not wake it: it moves, and nobody says so."""

    @pytest.fixture(params=["processes", "embedded"])
    def topology(self, request, sqlite_url, clock):
        """`processes`: the API and the scheduler as separate processes have them (a composition
        root each) on PostgreSQL, the scheduler's process as `scheduler_loops` builds it;
        `embedded`: make run's wiring on SQLite (scheduling's SERVICE, shared.service_app.build_embedded)."""
        if request.param == "processes":
            url = emptied(request.getfixturevalue("migrated_postgres_url"))
            api, side = build_container(url, clock), build_container(url, clock)
            loops = scheduler_loops(side)
            client = create_app(container=api).test_client()
        else:
            url = None
            app, loops = build_embedded(
                SERVICE, make_settings("scheduling", sqlite_url("scheduling"), TASKHUB_CORE_URL=NO_CORE)
            )
            api = side = app.extensions["scheduling"]
            client = app.test_client()
        side.clock = api.clock = clock
        [scheduler] = [loop.run.__self__ for loop in loops if loop.name == "scheduling.scheduler"]  # type: ignore[attr-defined]
        scheduler.clock = clock
        stop = threading.Event()
        threads = []
        listener = [loop for loop in loops if loop.name == "wakeups.listener"]
        if listener:
            threads += start_loops(listener, stop)
            assert url is not None  # a listener runs on PostgreSQL only
            wait_until(lambda: listening(url), 10, message="the wake-up listener is connected")
            # its catch-up at connect wakes every loop once (nothing was missed: a fresh start)
            wait_until(lambda: scheduler.wakeup.wait(0.1), 10, message="the listener's catch-up")
        yield client, side, scheduler, lambda: threads.extend(start_loops([Loop("s", scheduler.run)], stop))
        stop.set()
        for thread in threads:
            thread.join(5)
        api.ctx.dispose()
        side.ctx.dispose()

    def test_a_slot_created_while_it_sleeps_fires_and_idle_it_queries_nothing(self, topology, auth, clock):
        client, side, scheduler, start = topology
        hourly = client.post(
            P, json={"task_type": "example.noop", "cron_expression": "0 13 * * *"}, headers=auth.headers()
        )
        assert hourly.status_code == 201, hourly.json
        # the creation woke the scheduler's side (not started yet: taken here, so that the test
        # knows when it sleeps)
        wait_until(lambda: scheduler.wakeup.wait(0.1), 10, message="the creation's wake-up")
        with statements_of(side.ctx.engine) as log:
            start()
            wait_until(lambda: scheduler.passes, 10, message="its first pass done: asleep")
            assert log.count("FROM periodic_tasks") and log.count("FROM cron_jobs")
            before = log.count()
            at(clock, "2026-06-01T12:00:55")  # the 13:00 slot is an hour away: nothing to do
            threading.Event().wait(2.5)  # the window in which it must stay silent
            assert log.count() == before, log.statements[before:]
            minutely = client.post(
                P, json={"task_type": "example.noop", "cron_expression": "* * * * *"}, headers=auth.headers()
            ).json
            # woken: the 12:01 slot is within the lookahead (10 s), so it fires now
            wait_until(lambda: runs(side), 10, message="the new schedule's slot fired")
        assert [(r.schedule_id, r.planned_time.minute) for r in runs(side)] == [(minutely["id"], 1)]

    def test_a_run_waiting_for_its_task_to_be_cancelled_wakes_it(self, container, clock, client, auth):
        """cancel_previous: the previous run's task was not known when the next slot fired; when
        core's task.created links it, the scheduler is woken to ask core to cancel it."""
        client.post(
            P,
            json={
                "task_type": "example.noop",
                "cron_expression": "* * * * *",
                "overlap_policy": "cancel_previous",
            },
            headers=auth.headers(),
        )
        scheduler = Scheduler(container)
        calls: list[tuple[int, int]] = []

        def cancel_task(token: str, brand: int, pk: int) -> int:
            calls.append((brand, pk))
            return 200

        container.core.cancel_task = cancel_task
        at(clock, "2026-06-01T12:01:00")
        scheduler.tick()
        at(clock, "2026-06-01T12:02:00")
        scheduler.tick()
        first = runs(container)[0]
        assert first.cancel_requested_at is not None and first.task_pk is None
        stop = threading.Event()
        threads = start_loops([Loop("scheduler", scheduler.run)], stop)
        try:
            wait_until(lambda: scheduler.passes, 10, message="its first pass done: asleep")
            assert calls == []  # nothing to ask core yet: the run has no task
            deliver(container, task_created(501, first.idempotency_key))
            wait_until(lambda: calls == [(9, 501)], 10, message="the scheduler asks core")
        finally:
            stop.set()
            for thread in threads:
                thread.join(5)
