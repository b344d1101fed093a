"""Core's events applied a consumer batch at a time: the same outcome as one by one, the ordering
rules applied in memory, a few statements per batch whatever its size (rollup rows written once
per batch), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from services.monitoring.models import MetricsDaily, MetricsHistogram, MetricsRecord, TaskView
from services.monitoring.set_based import ConcurrentChange, insert_new
from shared.events.bus import EVENTS_EXCHANGE, OutgoingMessage
from shared.events.catalog import TaskCancelled, TaskDeleted, TaskRetried, TaskStarted, TaskUpdated
from shared.events.envelope import iso, utcnow
from shared.testing.fixtures import wait_until

URL = "/tasks/monitoring/metrics/"


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement sent to the database meanwhile (an executemany counts once)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def writes_to(seen: list[str], table: str) -> int:
    return sum(1 for s in seen if s.startswith((f"INSERT INTO {table} ", f"UPDATE {table} ")))


def started(task: dict, attempt: int) -> TaskStarted:
    return TaskStarted(
        id=task["id"], task_id=task["task_id"], attempt=attempt, worker_name="w1", started_at=iso(utcnow())
    )


def rows(container: Any, model: Any, *where: Any) -> list[dict[str, Any]]:
    with container.ctx.engine.connect() as conn:
        found = conn.execute(select(model.__table__).where(*where)).all()
    return [dict(row._mapping) for row in found]


def story(feed: Any, task_type: str) -> tuple[list[Any], dict[str, dict]]:
    """The events of three tasks of `task_type`, as core sends them, interleaved: one that fails,
    is retried and completes; one cancelled while running; one that completes and is deleted."""
    created = [feed.new_task(task_type) for _ in range(3)]
    retried, cancelled, deleted = (envelope.data for envelope in created)
    envelopes = [
        *created,
        feed.envelope(started(retried, 1), 9),
        feed.envelope(started(cancelled, 1), 9),
        feed.outcome(retried, attempt=1, ok=False, will_retry=True, execution_time_ms=40.0),
        feed.envelope(
            TaskRetried(id=retried["id"], task_id=retried["task_id"], retry_count=1, reason="automatic"), 9
        ),
        feed.envelope(
            TaskCancelled(
                id=cancelled["id"], task_id=cancelled["task_id"], previous_status="running", attempt=1
            ),
            9,
        ),
        feed.outcome(deleted, attempt=1, execution_time_ms=5.0),
        feed.envelope(started(retried, 2), 9),
        feed.envelope(
            TaskUpdated(id=retried["id"], task_id=retried["task_id"], changed={"priority": "high"}), 9
        ),
        feed.outcome(retried, attempt=2, retry_count=1, execution_time_ms=70.0, cost_usd=0.5),
        feed.envelope(TaskDeleted(id=deleted["id"], task_id=deleted["task_id"], attempt=1), 9),
        feed.outcome(deleted, attempt=1, execution_time_ms=5.0),  # a late copy after the deletion
    ]
    return envelopes, {"retried": retried, "cancelled": cancelled, "deleted": deleted}


def state(container: Any, tasks: dict[str, dict], task_type: str) -> dict[str, Any]:
    """What the tasks left behind, without what differs between two runs (ids, write times)."""
    ignored = {
        "id",
        "task_id",
        "base_task",
        "updated_at",
        "created_at",
        "started_at",
        "completed_at",
        "task_type",
    }

    def clean(row: dict[str, Any]) -> dict[str, Any]:
        # sums may differ in the last bits: a run one by one adds and subtracts in another order
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items() if k not in ignored}

    out: dict[str, Any] = {}
    for name, task in tasks.items():
        out[name] = {
            "view": [clean(r) for r in rows(container, TaskView, TaskView.id == task["id"])],
            "record": [
                clean(r) for r in rows(container, MetricsRecord, MetricsRecord.base_task == task["id"])
            ],
        }
    # rows a record was counted in and out of again (one by one) hold zeros: as good as none
    out["daily"] = [
        clean(r) for r in rows(container, MetricsDaily, MetricsDaily.task_type == task_type) if r["runs"]
    ]
    out["histogram"] = sorted(
        (r["metric"], r["bucket"], r["count"], round(r["total"], 6))
        for r in rows(container, MetricsHistogram, MetricsHistogram.task_type == task_type)
        if r["count"]
    )
    return out


def test_a_batch_gives_what_the_same_events_one_by_one_give(container, feed):
    in_one_batch, batched = story(feed, "story.batched")
    feed.apply_batch(in_one_batch)
    one_by_one, alone = story(feed, "story.alone")
    for envelope in one_by_one:
        feed.apply_batch([envelope])

    assert state(container, batched, "story.batched") == state(container, alone, "story.alone")
    result = state(container, batched, "story.batched")
    [retried] = result["retried"]["view"]
    assert (retried["status"], retried["attempt"], retried["retry_count"], retried["priority"]) == (
        "completed",
        2,
        1,
        "high",
    )
    [record] = result["retried"]["record"]
    assert (record["attempt"], record["execution_time_ms"], record["succeeded"], record["priority"]) == (
        2,
        70.0,
        True,
        "high",
    )
    assert result["cancelled"]["view"][0]["status"] == "cancelled" and result["cancelled"]["record"] == []
    assert result["deleted"]["view"][0]["status"] == "deleted" and result["deleted"]["record"] == []
    # one record counted, under the priority it ended with; the failed attempt replaced
    [day] = result["daily"]
    assert (day["priority"], day["runs"], day["failures"], day["execution_time_ms"], day["cost_usd"]) == (
        "high",
        1,
        0,
        70.0,
        0.5,
    )
    assert [e["data"]["task_id"] for e in feed.published("metrics.deleted")] == [
        batched["deleted"]["task_id"],
        alone["deleted"]["task_id"],
    ]


def test_a_late_report_of_an_older_attempt_changes_nothing(container, feed):
    task = feed.task()
    feed.apply_batch(
        [
            feed.outcome(task, attempt=1, ok=False, will_retry=True, execution_time_ms=10.0),
            feed.envelope(
                TaskRetried(id=task["id"], task_id=task["task_id"], retry_count=1, reason="automatic"), 9
            ),
            feed.outcome(task, attempt=2, retry_count=1, execution_time_ms=20.0),
        ]
    )
    before = [rows(container, model) for model in (TaskView, MetricsRecord, MetricsDaily, MetricsHistogram)]
    with statements(container.ctx.engine) as seen:
        feed.apply_batch(
            [
                feed.outcome(task, attempt=1, ok=False, execution_time_ms=999.0),  # late and older
                feed.envelope(started(task, 1), 9),
                feed.envelope(
                    TaskRetried(id=task["id"], task_id=task["task_id"], retry_count=1, reason="manual"), 9
                ),
            ]
        )
    assert [
        rows(container, model) for model in (TaskView, MetricsRecord, MetricsDaily, MetricsHistogram)
    ] == before
    assert not [s for s in seen if s.startswith(("INSERT INTO task_views", "UPDATE", "INSERT INTO metrics"))]
    assert before[0][0]["status"] == "completed" and before[1][0]["execution_time_ms"] == 20.0


def test_a_final_status_sticks_until_a_newer_retry_or_attempt(client, auth, feed):
    task = feed.task()

    def status() -> str:
        [view] = rows(feed.container, TaskView, TaskView.id == task["id"])
        return view["status"]

    feed.apply(TaskCancelled(id=task["id"], task_id=task["task_id"], previous_status="pending"), 9)
    feed.apply(started(task, 0), 9)  # a late start of the attempt that was cancelled
    assert status() == "cancelled"
    feed.apply(TaskRetried(id=task["id"], task_id=task["task_id"], retry_count=1, reason="manual"), 9)
    assert status() == "pending"
    # the retry's outcome overtakes its task.updated: a newer attempt speaks for the task
    feed.finished(task, attempt=1, ok=False, retry_count=1)
    assert status() == "failed"
    feed.apply(
        TaskUpdated(id=task["id"], task_id=task["task_id"], changed={"status": "pending", "attempt": 1}), 9
    )
    assert status() == "failed"  # the same attempt: the final status sticks
    feed.apply(
        TaskUpdated(id=task["id"], task_id=task["task_id"], changed={"status": "pending", "attempt": 2}), 9
    )
    assert status() == "pending"  # core started a newer attempt (a resumed job)


def test_a_backlog_writes_the_rollup_rows_once_per_batch(container, feed):
    """600 events of 300 no-op tasks waiting when the consumer starts: taken in batches, each
    batch with completions writes the day's rollup row and its histogram buckets once (the same
    ~15 rows for every task here), and every batch costs a few statements whatever its size."""
    consumer = feed.consumer
    batches: list[tuple[int, int]] = []  # (deliveries, completions) of each batch
    apply_batch = consumer.apply_batch

    def counted(deliveries: Any) -> None:
        batches.append((len(deliveries), sum(d.routing_key == "task.completed" for d in deliveries)))
        apply_batch(deliveries)

    consumer.apply_batch = counted
    subscription = consumer.subscription(container.bus, "monitoring.backlog")  # declares the queue
    created = [feed.new_task("example.noop") for _ in range(300)]
    envelopes = []
    for first, second in zip(created[::2], created[1::2], strict=True):  # as core sends them
        envelopes += [first, second, feed.outcome(first.data), feed.outcome(second.data)]
    container.bus.publish(
        [OutgoingMessage(EVENTS_EXCHANGE, e.event_type, e.to_json(), e.event_id) for e in envelopes]
    )

    stop = threading.Event()
    with statements(container.ctx.engine) as seen:
        thread = threading.Thread(target=subscription.run, args=(stop,), daemon=True)
        thread.start()
        try:
            wait_until(lambda: sum(n for n, _ in batches) >= 600, timeout=60, message="the backlog applied")
        finally:
            stop.set()
            thread.join(10)

    with_completions = sum(1 for _, completed in batches if completed)
    assert len(batches) >= 3 and with_completions >= 3
    assert writes_to(seen, "metrics_daily") == with_completions
    assert writes_to(seen, "metrics_histogram") == with_completions
    assert writes_to(seen, "metrics_records") == with_completions
    assert writes_to(seen, "task_views") <= 2 * len(batches)
    assert len(seen) <= 12 * len(batches), seen
    [day] = rows(container, MetricsDaily)
    assert (day["task_type"], day["runs"], day["execution_time_ms"]) == ("example.noop", 300, 30_000.0)
    assert {r["count"] for r in rows(container, MetricsHistogram) if r["metric"] == "execution_time_ms"} == {
        300
    }


def test_events_per_statement_stay_under_the_parameter_limit(container, feed, monkeypatch):
    """A batch larger than one statement may carry is written in several statements (SQLAlchemy
    splits an executemany by the dialect's page size and parameter limit)."""
    monkeypatch.setattr(container.ctx.engine.dialect, "insertmanyvalues_page_size", 5)
    tasks = [feed.task() for _ in range(12)]
    with statements(container.ctx.engine) as seen:
        feed.apply_batch([feed.outcome(task, execution_time_ms=float(n)) for n, task in enumerate(tasks)])
    assert writes_to(seen, "metrics_records") > 1
    assert sum(r["runs"] for r in rows(container, MetricsDaily)) == 12


def test_a_row_inserted_concurrently_fails_the_batch(container, app):
    """The batch found no view of the task, but one was committed meanwhile: it must not be
    overwritten blindly (the batch is applied again event by event)."""
    now = utcnow()
    row = {"id": 7, "task_id": "task_7", "brand_id": 9, "status": "completed", "updated_at": now}
    with container.session_factory() as session:
        insert_new(session, TaskView.__table__, [row], "id")
        session.commit()
    with container.session_factory() as session, pytest.raises(ConcurrentChange):
        insert_new(session, TaskView.__table__, [{**row, "status": "pending"}], "id")
    [kept] = rows(container, TaskView)
    assert kept["status"] == "completed"


def test_records_are_dated_when_their_attempt_ended(client, auth, feed):
    task = feed.task()
    ended = utcnow() - timedelta(days=2)
    feed.finished(task, at=ended)
    [record] = rows(feed.container, MetricsRecord)
    assert record["created_at"].date() == ended.date()
