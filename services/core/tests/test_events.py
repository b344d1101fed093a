"""core's event side: workers' attempt reports applied once, in order, in batches and never
backwards; the public task events core emits from them; retries held in the database; leases
renewed by heartbeats and lost workers recovered; the outbox relay never skipping a late commit."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import event, insert, select, update

from services.core.execution import dispatch_due, reap_expired_leases
from services.core.models import Task, TaskLease
from shared.events import catalog
from shared.events.bus import EVENTS_EXCHANGE
from shared.events.envelope import Envelope, iso, utcnow
from shared.events.inprocess_bus import InProcessBus
from shared.events.outbox_relay import OutboxRelay

NOW = iso(utcnow())


def report(cls, task, attempt=1, worker="w1", brand=None, **fields):
    """A worker's report about `task` (as the API returned it)."""
    data = {"id": task["id"], "task_id": task["task_id"], "attempt": attempt, "worker_name": worker, **fields}
    if cls in (catalog.AttemptCompleted, catalog.AttemptFailed):
        data.setdefault("started_at", NOW)
        data.setdefault("finished_at", NOW)
        data.setdefault(
            "metrics", catalog.AttemptMetrics(execution_time_ms=12, memory_usage_mb=3.5, cost_usd=0.01)
        )
    if cls is catalog.AttemptCompleted:
        data.setdefault("result_data", {})
    if cls is catalog.AttemptFailed:
        data.setdefault("error_message", "boom")
    if cls is catalog.AttemptStarted:
        data.setdefault("started_at", NOW)
    return Envelope.of(cls(**data), task["brand"]["id"] if brand is None else brand)


def history(client, auth, task):
    return [
        c["to_status"]
        for c in reversed(client.get(f"/tasks/{task['id']}/", headers=auth.headers()).json["status_history"])
    ]


def detail(client, auth, task):
    return client.get(f"/tasks/{task['id']}/", headers=auth.headers()).json


def emitted(container, event_type):
    """(data, headers) of the events of a type core wrote to its outbox, oldest first."""
    outbox = container.ctx.outbox
    with container.session_factory() as session:
        rows = session.execute(
            select(outbox.c.body, outbox.c.headers)
            .where(outbox.c.routing_key == event_type)
            .order_by(outbox.c.id)
        ).all()
    return [(json.loads(body)["data"], headers) for body, headers in rows]


@pytest.fixture
def noop_worker(live_worker):
    live_worker("example.noop")


@pytest.fixture
def reports(container):
    return container.consumers()[0]


def apply(consumer, *envelopes):
    return consumer.apply(list(envelopes))


@pytest.mark.usefixtures("noop_worker")
class TestAttemptReports:
    def test_a_short_attempt_reports_once_and_core_completes_it_with_its_metrics(
        self, client, auth, make_task, reports, container
    ):
        task = make_task()
        apply(reports, report(catalog.AttemptCompleted, task, result_data={"ok": True}))
        done = detail(client, auth, task)
        assert (done["status"], done["progress_percentage"], done["result_data"]) == (
            "completed",
            100,
            {"ok": True},
        )
        assert (done["worker_name"], done["has_metrics"], done["metrics"]["execution_time_ms"]) == (
            "w1",
            True,
            12,
        )
        assert history(client, auth, task) == ["pending", "running", "completed"]
        [(completed, headers)] = emitted(container, "task.completed")
        assert (completed["task_type"], completed["attempt"], completed["metrics"]["cost_usd"]) == (
            "example.noop",
            1,
            0.01,
        )
        assert headers == {}  # neither periodic nor persistent: followers filter it out
        assert emitted(container, "task.started") == []  # a short attempt goes straight to its outcome
        listed = client.get("/tasks/?has_metrics=true&execution_time__gte=10", headers=auth.headers()).json
        assert [t["id"] for t in listed["results"]] == [task["id"]]

    def test_a_long_attempt_is_started_then_progresses_then_completes(
        self, client, auth, make_task, reports, container
    ):
        task = make_task()
        apply(reports, report(catalog.AttemptStarted, task))
        apply(reports, report(catalog.AttemptProgress, task, progress_percentage=40, current_step="batch 2"))
        running = detail(client, auth, task)
        assert (running["status"], running["progress_percentage"], running["worker_name"]) == (
            "running",
            40,
            "w1",
        )
        with container.session_factory() as session:
            assert session.get(TaskLease, task["id"]).worker_name == "w1"
        apply(reports, report(catalog.AttemptCompleted, task, result_data={"ok": True}))
        assert (detail(client, auth, task)["status"], detail(client, auth, task)["progress_percentage"]) == (
            "completed",
            100,
        )
        assert [data["attempt"] for data, _ in emitted(container, "task.started")] == [1]
        with container.session_factory() as session:
            assert session.get(TaskLease, task["id"]) is None  # the outcome ends the lease

    def test_a_duplicated_report_changes_nothing(self, client, auth, make_task, reports):
        task = make_task()
        completed = report(catalog.AttemptCompleted, task, result_data={"n": 1})
        assert apply(reports, completed) == [completed]
        assert apply(reports, completed) == []
        assert history(client, auth, task).count("completed") == 1

    def test_a_late_older_report_does_not_move_a_task_backwards(self, client, auth, make_task, reports):
        task = make_task()
        apply(reports, report(catalog.AttemptStarted, task))
        apply(reports, report(catalog.AttemptCompleted, task))
        apply(reports, report(catalog.AttemptProgress, task, progress_percentage=10))
        apply(reports, report(catalog.AttemptStarted, task))
        apply(reports, report(catalog.AttemptFailed, task, error_message="late"))
        done = detail(client, auth, task)
        assert (done["status"], done["progress_percentage"], done["error_message"]) == (
            "completed",
            100,
            None,
        )

    def test_a_batch_applies_each_task_s_reports_in_order(self, client, auth, make_task, reports, container):
        first, second, third = make_task(), make_task(), make_task(max_retries=0)
        apply(
            reports,
            report(catalog.AttemptStarted, first),
            report(catalog.AttemptCompleted, second),
            report(catalog.AttemptProgress, first, progress_percentage=50),
            report(catalog.AttemptCompleted, first, result_data={"n": 1}),
            report(catalog.AttemptProgress, first, progress_percentage=70),  # late: ignored
            report(catalog.AttemptFailed, third, error_message="nope"),
        )
        assert [detail(client, auth, t)["status"] for t in (first, second, third)] == [
            "completed",
            "completed",
            "failed",
        ]
        assert history(client, auth, first) == ["pending", "running", "completed"]
        assert detail(client, auth, first)["progress_percentage"] == 100
        assert [d["task_id"] for d, _ in emitted(container, "task.completed")] == [
            second["task_id"],
            first["task_id"],
        ]

    def test_a_batch_costs_a_few_statements_however_many_reports(self, make_task, reports, container):
        tasks = [make_task() for _ in range(40)]
        statements = []
        listen = event.listens_for(container.ctx.engine, "before_cursor_execute")
        record = listen(lambda conn, cursor, sql, params, context, many: statements.append(sql))
        try:
            apply(reports, *(report(catalog.AttemptCompleted, t) for t in tasks))
        finally:
            event.remove(container.ctx.engine, "before_cursor_execute", record)
        writes = [s for s in statements if not s.lstrip().upper().startswith(("SAVEPOINT", "RELEASE"))]
        # inbox, select tasks, update tasks, history, leases, outbox, (NOTIFY): not one per report
        assert len(writes) <= 10, writes

    def test_a_result_for_a_cancelled_task_is_ignored(self, client, auth, make_task, reports):
        task = make_task()
        apply(reports, report(catalog.AttemptStarted, task))
        client.post(f"/tasks/{task['id']}/cancel/", headers=auth.headers())
        apply(reports, report(catalog.AttemptCompleted, task, result_data={"late": True}))
        assert detail(client, auth, task)["status"] == "cancelled"

    def test_a_heartbeat_still_running_a_cancelled_task_gets_it_revoked_again(
        self, client, auth, make_task, reports, container, live_worker
    ):
        task = make_task()
        apply(reports, report(catalog.AttemptStarted, task))
        client.post(f"/tasks/{task['id']}/cancel/", headers=auth.headers())
        live_worker(
            "example.noop", active=[catalog.ActiveAttempt(id=task["id"], task_id=task["task_id"], attempt=1)]
        )
        assert [data["task_id"] for data, _ in emitted(container, "task.attempt_revoked")] == [
            task["task_id"]
        ]

    def test_reports_naming_another_brand_s_task_are_ignored(self, client, auth, make_task, reports):
        task = make_task()
        apply(reports, report(catalog.AttemptCompleted, task, brand=10))
        assert detail(client, auth, task)["status"] == "pending"


@pytest.mark.usefixtures("noop_worker")
class TestRetriesAndRecovery:
    def test_a_failure_with_retries_left_waits_in_the_database_then_runs_again(
        self, client, auth, make_task, reports, container
    ):
        task = make_task(max_retries=2)
        apply(reports, report(catalog.AttemptFailed, task, error_message="boom", retry_delay_seconds=0))
        now = detail(client, auth, task)
        assert (now["status"], now["retry_count"], now["error_message"]) == ("retrying", 1, "boom")
        [(failed, _)] = emitted(container, "task.failed")
        assert (failed["will_retry"], failed["retry_count"]) == (True, 0)  # core's decision, once
        assert [d["reason"] for d, _ in emitted(container, "task.retried")] == ["automatic"]
        with container.uow() as uow:
            assert dispatch_due(uow, ["example.noop"]) == 1
            uow.commit()
        with container.session_factory() as session:
            assert session.get(Task, task["id"]).attempt == 2
        apply(reports, report(catalog.AttemptCompleted, task, attempt=2))
        assert detail(client, auth, task)["status"] == "completed"

    def test_no_retry_left_fails(self, client, auth, make_task, reports, container):
        task = make_task(max_retries=0)
        apply(reports, report(catalog.AttemptFailed, task, error_message="boom"))
        assert detail(client, auth, task)["status"] == "failed"
        assert [d["will_retry"] for d, _ in emitted(container, "task.failed")] == [False]

    def test_a_task_handed_back_at_shutdown_runs_again_at_once_without_a_lost_delivery(
        self, client, auth, make_task, reports, container
    ):
        task = make_task()
        apply(reports, report(catalog.AttemptStarted, task))
        apply(reports, report(catalog.AttemptReleased, task, reason="worker shutdown"))
        with container.session_factory() as session:
            stored = session.get(Task, task["id"])
            assert (stored.status, stored.attempt, stored.lost_deliveries) == ("pending", 2, 0)
        apply(reports, report(catalog.AttemptReleased, task, reason="late repeat"))  # stale attempt: nothing
        assert history(client, auth, task) == ["pending", "running", "pending"]

    def test_a_heartbeat_keeps_a_lease_alive_even_before_the_start_report_arrives(
        self, make_task, container, live_worker
    ):
        task = make_task()
        active = [catalog.ActiveAttempt(id=task["id"], task_id=task["task_id"], attempt=1)]
        live_worker("example.noop", active=active)
        with container.session_factory() as session:
            lease = session.get(TaskLease, task["id"])
            assert (lease.attempt, lease.worker_name) == (1, "w1")
            assert lease.expires_at > utcnow() + container.policy.lease - timedelta(seconds=5)

    def test_a_lost_worker_runs_the_task_again_then_dead_letters_it(
        self, client, auth, make_task, reports, container
    ):
        task = make_task()
        for attempt in range(1, container.policy.max_lost_deliveries + 1):
            apply(reports, report(catalog.AttemptStarted, task, attempt=attempt))
            with container.uow() as uow:
                uow.session.execute(update(TaskLease).values(expires_at=utcnow() - timedelta(seconds=1)))
                assert reap_expired_leases(uow, container.policy) == 1
                uow.commit()
        done = detail(client, auth, task)
        assert done["status"] == "failed" and "dead-lettered" in done["error_message"]
        assert history(client, auth, task).count("pending") == container.policy.max_lost_deliveries
        assert [d["dead_lettered"] for d, _ in emitted(container, "task.failed")] == [True]
        OutboxRelay(container.ctx.engine, container.ctx.outbox, container.bus, "core").publish_pending()
        figures = container.bus.queue_figures(container.bus.work_queue_name("dead"))
        assert figures is not None and figures.ready == 1


def test_the_relay_never_skips_a_row_that_commits_late(postgres_url):
    """Two writers: the one holding the lower id commits last; both rows are published."""
    from services.core.container import bootstrap
    from shared.migrations import upgrade
    from shared.testing.fixtures import make_settings

    container = bootstrap(make_settings("core", postgres_url), bus=InProcessBus(prefix="t."))
    upgrade("core", container.ctx.engine)
    bus, outbox, engine = container.bus, container.ctx.outbox, container.ctx.engine
    received: list[str] = []
    relay = OutboxRelay(engine, outbox, bus, "core")

    def row(message_id):
        return insert(outbox).values(
            message_id=message_id,
            exchange=EVENTS_EXCHANGE,
            routing_key="x.y",
            body=b"{}",
            headers={},
            created_at=utcnow(),
            attempts=0,
        )

    bus.publish = lambda messages: received.extend(m.message_id for m in messages)  # type: ignore[method-assign]
    slow = engine.connect()
    slow_tx = slow.begin()
    slow.execute(row("early-id-late-commit"))
    with engine.begin() as fast:
        fast.execute(row("late-id-early-commit"))
    relay.publish_pending()
    assert received == ["late-id-early-commit"]
    slow_tx.commit()
    slow.close()
    relay.publish_pending()
    assert received == ["late-id-early-commit", "early-id-late-commit"]
    with engine.connect() as conn:
        assert conn.execute(select(outbox.c.id)).all() == []  # published rows are gone
    container.ctx.dispose()


def test_a_task_waits_for_a_worker_of_its_type_then_is_dispatched_when_one_appears(
    client, auth, make_task, container, live_worker
):
    task = make_task(task_type="late.type")
    with container.session_factory() as session:
        assert session.get(Task, task["id"]).attempt == 0  # waiting in the database
    assert container._dispatch_due() is None  # nothing due for the types served (none)
    live_worker("late.type")
    signal = container.ctx.wakeups.signal("due")
    assert signal.wait(0), "the heartbeat of a new type wakes the dispatcher"
    container._dispatch_due()
    with container.session_factory() as session:
        assert session.get(Task, task["id"]).attempt == 1
    figures = container.bus.queue_figures(container.bus.work_queue_name("normal"))
    assert figures is None or figures.ready == 0  # still in the outbox until the relay runs


@pytest.mark.usefixtures("noop_worker")
def test_a_heartbeat_naming_two_attempts_of_one_task_keeps_the_newest_lease(
    make_task, container, live_worker
):
    task = make_task()
    active = [
        catalog.ActiveAttempt(id=task["id"], task_id=task["task_id"], attempt=2),
        catalog.ActiveAttempt(id=task["id"], task_id=task["task_id"], attempt=1),  # a revoked copy
    ]
    live_worker("example.noop", active=active)
    with container.session_factory() as session:
        assert session.get(TaskLease, task["id"]).attempt == 2
