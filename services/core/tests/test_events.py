"""core's event side: worker reports applied once and never backwards, retries held in the
database, lost workers recovered, and the outbox relay never skipping a late commit."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update

from services.core.execution import dispatch_due, reap_expired_leases
from services.core.models import Task
from shared.events.bus import EVENTS_EXCHANGE
from shared.events.envelope import Envelope, utcnow
from shared.events.inprocess_bus import InProcessBus
from shared.events.outbox_relay import OutboxRelay


def worker_event(event_type, task, attempt=1, **data):
    return Envelope(
        event_type=event_type,
        producer="worker",
        brand_id=task["brand"]["id"],
        data={"id": task["id"], "task_id": task["task_id"], "attempt": attempt, "worker_name": "w1", **data},
    )


def history(client, auth, task):
    return [
        c["to_status"]
        for c in reversed(client.get(f"/tasks/{task['id']}/", headers=auth.headers()).json["status_history"])
    ]


@pytest.fixture
def noop_worker(live_worker):
    live_worker("example.noop")


@pytest.fixture
def consumer(container):
    return container.consumers()[0]


def apply(consumer, envelope):
    return consumer.apply(envelope, consumer.handlers[envelope.event_type])


@pytest.mark.usefixtures("noop_worker")
class TestWorkerReports:
    def test_started_progress_completed(self, client, auth, make_task, consumer):
        task = make_task()
        apply(consumer, worker_event("task.started", task, started_at=utcnow().isoformat()))
        apply(consumer, worker_event("task.progress", task, progress_percentage=40, current_step="batch 2"))
        running = client.get(f"/tasks/{task['id']}/", headers=auth.headers()).json
        assert (running["status"], running["progress_percentage"], running["worker_name"]) == (
            "running",
            40,
            "w1",
        )
        apply(consumer, worker_event("task.completed", task, result_data={"ok": True}, metrics={}))
        done = client.get(f"/tasks/{task['id']}/", headers=auth.headers()).json
        assert (done["status"], done["progress_percentage"], done["result_data"]) == (
            "completed",
            100,
            {"ok": True},
        )

    def test_a_duplicated_event_changes_nothing(self, client, auth, make_task, consumer):
        task = make_task()
        completed = worker_event("task.completed", task, result_data={"n": 1}, metrics={})
        assert apply(consumer, completed) is True
        assert apply(consumer, completed) is False
        assert history(client, auth, task).count("completed") == 1

    def test_a_late_older_event_does_not_move_a_task_backwards(self, client, auth, make_task, consumer):
        task = make_task()
        apply(consumer, worker_event("task.started", task))
        apply(consumer, worker_event("task.completed", task, result_data={}, metrics={}))
        apply(consumer, worker_event("task.progress", task, progress_percentage=10))
        apply(consumer, worker_event("task.started", task))
        apply(consumer, worker_event("task.failed", task, error_message="late", will_retry=True))
        detail = client.get(f"/tasks/{task['id']}/", headers=auth.headers()).json
        assert (detail["status"], detail["progress_percentage"], detail["error_message"]) == (
            "completed",
            100,
            None,
        )

    def test_a_result_for_a_cancelled_task_is_ignored(self, client, auth, make_task, consumer):
        task = make_task()
        apply(consumer, worker_event("task.started", task))
        client.post(f"/tasks/{task['id']}/cancel/", headers=auth.headers())
        apply(consumer, worker_event("task.completed", task, result_data={"late": True}, metrics={}))
        assert client.get(f"/tasks/{task['id']}/", headers=auth.headers()).json["status"] == "cancelled"

    def test_a_heartbeat_still_running_a_cancelled_task_gets_it_revoked_again(
        self, client, auth, make_task, consumer, container
    ):
        task = make_task()
        apply(consumer, worker_event("task.started", task))
        client.post(f"/tasks/{task['id']}/cancel/", headers=auth.headers())
        heartbeat = Envelope(
            "worker.heartbeat",
            "worker",
            None,
            {
                "worker_name": "w1",
                "active_task_ids": [task["task_id"]],
                "active_tasks": [{"task_id": task["task_id"], "attempt": 1}],
            },
        )
        apply(consumer, heartbeat)
        with container.session_factory() as session:
            revoked = (
                session.execute(
                    select(container.ctx.outbox.c.body).where(
                        container.ctx.outbox.c.routing_key == "task.attempt_revoked"
                    )
                )
                .scalars()
                .all()
            )
        assert [json.loads(body)["data"]["task_id"] for body in revoked] == [task["task_id"]]

    def test_events_of_another_brand_are_ignored(self, client, auth, make_task, consumer):
        task = make_task()
        forged = Envelope("task.completed", "worker", 10, {"id": task["id"], "attempt": 1, "result_data": {}})
        apply(consumer, forged)
        assert client.get(f"/tasks/{task['id']}/", headers=auth.headers()).json["status"] == "pending"


@pytest.mark.usefixtures("noop_worker")
class TestRetriesAndRecovery:
    def test_failure_with_retries_left_waits_in_the_database(
        self, client, auth, make_task, consumer, container
    ):
        task = make_task(max_retries=2)
        apply(consumer, worker_event("task.started", task))
        apply(
            consumer,
            worker_event("task.failed", task, error_message="boom", will_retry=True, retry_delay_seconds=0),
        )
        detail = client.get(f"/tasks/{task['id']}/", headers=auth.headers()).json
        assert (detail["status"], detail["retry_count"], detail["error_message"]) == ("retrying", 1, "boom")
        with container.uow() as uow:
            assert dispatch_due(uow, ["example.noop"]) == 1
            uow.commit()
        with container.session_factory() as session:
            assert session.get(Task, task["id"]).attempt == 2
        apply(consumer, worker_event("task.started", task, attempt=2))
        apply(consumer, worker_event("task.completed", task, attempt=2, result_data={}, metrics={}))
        assert client.get(f"/tasks/{task['id']}/", headers=auth.headers()).json["status"] == "completed"

    def test_a_task_handed_back_at_shutdown_runs_again_at_once_without_a_lost_delivery(
        self, client, auth, make_task, consumer, container
    ):
        task = make_task()
        apply(consumer, worker_event("task.started", task))
        apply(consumer, worker_event("task.released", task, reason="worker shutdown"))
        with container.session_factory() as session:
            stored = session.get(Task, task["id"])
            assert (stored.status, stored.attempt, stored.lost_deliveries) == ("pending", 2, 0)
        apply(consumer, worker_event("task.released", task, reason="late repeat"))  # stale attempt: nothing
        assert history(client, auth, task) == ["pending", "running", "pending"]

    def test_no_retry_left_fails(self, client, auth, make_task, consumer):
        task = make_task(max_retries=0)
        apply(consumer, worker_event("task.failed", task, error_message="boom", will_retry=True))
        assert client.get(f"/tasks/{task['id']}/", headers=auth.headers()).json["status"] == "failed"

    def test_a_lost_worker_runs_the_task_again_then_dead_letters_it(
        self, client, auth, make_task, consumer, container
    ):
        task = make_task()
        for attempt in range(1, container.policy.max_lost_deliveries + 1):
            apply(consumer, worker_event("task.started", task, attempt=attempt))
            with container.uow() as uow:
                uow.session.execute(update(Task).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
                assert reap_expired_leases(uow, container.policy) == 1
                uow.commit()
        detail = client.get(f"/tasks/{task['id']}/", headers=auth.headers()).json
        assert detail["status"] == "failed" and "dead-lettered" in detail["error_message"]
        assert history(client, auth, task).count("pending") == container.policy.max_lost_deliveries
        OutboxRelay(container.ctx.engine, container.ctx.outbox, container.bus, "core").publish_pending()
        dead = container.bus.work_client().get("dead")
        assert dead is not None and json.loads(dead.body)["task_id"] == task["task_id"]


def test_the_relay_never_skips_a_row_that_commits_late(postgres_url):
    """Two writers: the one holding the lower id commits last; both rows are published."""
    from services.core.container import bootstrap
    from shared.migrations import upgrade
    from shared.testing.fixtures import make_settings

    container = bootstrap(make_settings("core", postgres_url), bus=InProcessBus(prefix="t."))
    upgrade("core", container.ctx.engine)
    bus, outbox, engine = container.bus, container.ctx.outbox, container.ctx.engine
    received = []
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
        assert conn.execute(select(outbox.c.id).where(outbox.c.published_at.is_(None))).all() == []
    container.ctx.dispose()
