"""persistence follows core's task events, of persistent tasks only (the broker drops the rest):
task.created in one insert per batch, and the auto-resume loop
sleeps until a job stopped by accident is due, sending no query while idle."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

from services.persistence import read_model
from services.persistence.container import PersistenceContainer, bootstrap
from services.persistence.models import PersistentJob, TaskRef
from shared.background import Loop, start_loops
from shared.events.bus import EVENTS_EXCHANGE, OutgoingMessage
from shared.events.catalog import PERSISTENT_HEADER, AttemptMetrics, TaskCompleted, TaskDeleted, TaskFailed
from shared.events.envelope import Envelope
from shared.events.inprocess_bus import InProcessBus
from shared.events.rabbitmq_bus import RabbitMQBus
from shared.testing.fixtures import make_settings, wait_until
from shared.testing.statements import statements_of

from .conftest import SQLITE_ONLY, checkpoint, start, task_created

JOBS = "/tasks/persistent-jobs/persistent-jobs"


def test_a_batch_of_task_created_is_one_insert_and_its_persistent_tasks_get_jobs(app, container, events):
    created = [task_created(3000 + n, persistent=n % 50 == 0) for n in range(200)]
    with statements_of(container.ctx.engine) as log:
        container.consumers()[0].apply([Envelope.of(event, 9) for event in created])
    assert log.count("INSERT INTO task_refs") == 1
    assert log.count("INSERT INTO persistent_jobs") == 1
    assert log.count() <= 4, log.statements  # + the inbox's insert and the outbox's
    with container.session_factory() as session:
        assert len(session.scalars(select(TaskRef.id)).all()) == 200
        jobs = session.scalars(select(PersistentJob.base_task_id).order_by(PersistentJob.base_task_id)).all()
    assert jobs == [3000, 3050, 3100, 3150]
    assert sorted(e.data["base_task"] for e in events.published("job.created")) == jobs


def test_task_deleted_of_a_batch_takes_the_jobs_along(app, container, events, client, auth, machine):
    tasks = [events.task(), events.task(persistent=False), events.task()]
    job_id = start(client, machine, tasks[0]).json["job_id"]
    checkpoint(client, machine, job_id, "a", {"n": 1})
    events.core(TaskFailed, tasks[0], attempt=1, error_message="x", will_retry=False)
    doomed = [Envelope.of(TaskDeleted(id=t["id"], task_id=t["task_id"]), 9) for t in tasks[:2]]
    container.consumers()[0].apply(doomed)
    with container.session_factory() as session:
        assert session.scalars(select(TaskRef.id)).all() == [tasks[2]["id"]]
    assert client.get(f"{JOBS}/{job_id}/", headers=auth.headers()).status_code == 404
    [deleted] = [e for e in events.published("job.updated") if e.data["status"] == "deleted"]
    assert (deleted.data["job_id"], deleted.data["can_resume"]) == (job_id, False)


@SQLITE_ONLY
def test_only_persistent_tasks_events_reach_persistence_through_the_broker(
    database_url, amqp_url, bus_prefix, auth
):
    """core marks the events of persistent tasks with a header; persistence's queue is bound to
    them through it, task.created and task.deleted included, so the broker drops a plain task's
    events. The queue is first consumed as the version before did (task.created and task.deleted
    bound without the filter): the upgrade drops those bindings."""
    from services.persistence.app import create_app

    bus = RabbitMQBus(amqp_url, prefix=bus_prefix)
    container = bootstrap(
        make_settings("persistence", database_url, TASKHUB_AUTO_RESUME_SECONDS="0"), bus=bus
    )
    create_app(container=container)  # migrates
    inbox = container.ctx.inbox

    def applied() -> set[str]:
        with container.ctx.engine.connect() as conn:
            return set(conn.execute(select(inbox.c.event_id)).scalars())

    def publish(event: Any, headers: dict[str, str]) -> str:
        envelope = Envelope.of(event, 9)
        message = OutgoingMessage(
            EVENTS_EXCHANGE, envelope.event_type, envelope.to_json(), envelope.event_id, headers
        )
        bus.publish([message])
        return envelope.event_id

    def consume(subscription: Any, until: Any, message: str) -> None:
        stop = threading.Event()
        threads = start_loops([Loop("consumer", subscription.run)], stop)
        try:
            wait_until(until, 15, message=message)
        finally:
            stop.set()
            for thread in threads:
                thread.join(5)

    before = {k: v for k, v in read_model.FILTERED.items() if k not in ("task.created", "task.deleted")}
    old = container.ctx.inbox_consumer(
        "persistence",
        read_model.event_handlers(),
        batch_handlers=read_model.batch_handlers(),
        filtered=before,
    )
    queue = "persistence.persistence"
    subscription = old.subscription(bus, queue)  # declares the queue
    earlier = publish(task_created(7, persistent=False), {})
    consume(subscription, lambda: earlier in applied(), "the version before applies a plain task.created")
    subscription = container.consumers()[0].subscription(bus, queue)  # declares it anew

    plain, persistent = task_created(1, persistent=False), task_created(2)
    summary: dict[str, Any] = {
        "attempt": 1,
        "task_type": "example.batch",
        "priority": "normal",
        "retry_count": 0,
        "max_retries": 3,
    }
    events = [
        (plain, {}),
        (TaskCompleted(id=1, task_id=plain.task_id, result_data={}, metrics=AttemptMetrics(), **summary), {}),
        (TaskDeleted(id=1, task_id=plain.task_id), {}),
        (persistent, {PERSISTENT_HEADER: "1"}),
        (
            TaskCompleted(
                id=2, task_id=persistent.task_id, result_data={}, metrics=AttemptMetrics(), **summary
            ),
            {PERSISTENT_HEADER: "1"},
        ),
    ]
    sent = [publish(event, headers) for event, headers in events]

    def job_status() -> Any:
        with container.session_factory() as session:
            return session.scalar(select(PersistentJob.status))

    consume(subscription, lambda: job_status() == "completed", "the persistent task's outcome")
    # FIFO: the plain task's events went first; had they been routed, they would be here
    assert applied() == {earlier, sent[3], sent[4]}
    with container.session_factory() as session:
        assert set(session.scalars(select(TaskRef.id))) == {7, 2}
    container.ctx.dispose()
    bus.close()


class TestTheAutoResumeLoop:
    @pytest.fixture
    def container(self, database_url: str) -> Any:
        """Jobs stopped by accident are resumed one second after they stopped."""
        settings = make_settings("persistence", database_url, TASKHUB_AUTO_RESUME_SECONDS="1")
        built: PersistenceContainer = bootstrap(settings, bus=InProcessBus(prefix="t."))
        yield built
        built.ctx.dispose()

    def test_it_sleeps_silently_until_a_stopped_job_is_due(
        self, app, container, events, client, auth, machine
    ):
        loop = container.auto_resumer
        stop = threading.Event()
        with statements_of(container.ctx.engine) as log:
            threads = start_loops([Loop("auto-resume", loop.run)], stop)
            try:
                wait_until(lambda: loop.passes, 10, message="its first pass done: asleep")
                before = log.count()
                threading.Event().wait(2.5)  # the window in which it must stay silent
                assert log.count() == before, log.statements[before:]
                task = events.task()
                job_id = start(client, machine, task).json["job_id"]
                checkpoint(client, machine, job_id, "half", {"next": 5}, progress_percentage=50)
                events.core(TaskFailed, task, attempt=1, error_message="disk full", will_retry=False)
                [resumed] = wait_until(lambda: events.published("job.resumed"), 10, message="resumed")
            finally:
                stop.set()
                for thread in threads:
                    thread.join(5)
        assert (resumed.data["job_id"], resumed.data["automatic"]) == (job_id, True)
        job = client.get(f"{JOBS}/{job_id}/", headers=auth.headers()).json
        with container.session_factory() as session:
            stored = session.get(PersistentJob, job_id)
            assert stored is not None and stored.resumed_at is not None and stored.interrupted_at is not None
            assert (stored.resumed_at - stored.interrupted_at).total_seconds() >= 1  # not before its delay
        assert job["status"] == "pending"
