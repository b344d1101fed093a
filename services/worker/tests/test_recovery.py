"""Workers that die or leave: a SIGKILLed worker's tasks run again elsewhere and complete once, a
task that kills its worker every time is dead-lettered after bounded deliveries, and SIGTERM drains
cleanly (real PostgreSQL, RabbitMQ, worker processes; core's lease is 3 s here)."""

from __future__ import annotations

import json
import signal

import psutil
import pytest

from shared.events.bus import WORK_EXCHANGE, OutgoingMessage
from shared.testing.fixtures import wait_until

from .conftest import MAX_LOST_DELIVERIES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_a_worker_killed_during_50_tasks_loses_none_and_repeats_none(platform):
    doomed = platform.start_worker("w-doomed", concurrency=8)
    platform.start_worker("w-survivor", concurrency=8)
    platform.wait_for_worker("w-doomed")
    platform.wait_for_worker("w-survivor")
    tasks = [platform.create("example.sleep", context_data={"seconds": 1.5, "steps": 3}) for _ in range(50)]
    wait_until(
        lambda: (
            len(
                [
                    e
                    for e in platform.events
                    if e.event_type == "task.started" and e.data["worker_name"] == "w-doomed"
                ]
            )
            >= 8
        ),
        timeout=30,
        message="w-doomed busy",
    )
    children = psutil.Process(doomed.pid).children(recursive=True)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    # its handler processes die with it (no orphan keeps running the tasks)
    wait_until(
        lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
        timeout=5,
        message="children of the killed worker gone",
    )

    for task in tasks:
        platform.wait_status(task, "completed", "failed", timeout=60)
    finals = [platform.get(task) for task in tasks]
    assert {t["status"] for t in finals} == {"completed"}
    for task in tasks:
        statuses = [h["to_status"] for h in platform.history(task)]
        assert statuses.count("completed") == 1, statuses
    recovered = [t for t in tasks if any("expired" in h["reason"] for h in platform.history(t))]
    assert recovered, "some tasks were running on the killed worker and were run again"
    assert all(platform.get(t)["worker_name"] == "w-survivor" for t in recovered)


def test_a_task_that_kills_its_worker_every_time_is_dead_lettered(platform):
    poison = platform.create("test.poison", priority="low")
    deaths = 0
    for _ in range(int(MAX_LOST_DELIVERIES)):
        worker = platform.start_worker(f"w-poisoned-{deaths}", concurrency=1, queues="low")
        worker.wait(30)  # the poison kills it
        deaths += 1
    final = platform.wait_status(poison, "failed", timeout=20)
    assert "dead-lettered" in final["error_message"]
    assert deaths == int(MAX_LOST_DELIVERIES)

    # the worker parks the order and reports the failure independently: wait for the parked copy
    def parked() -> bool:
        figures = platform.spy_bus.queue_figures(platform.spy_bus.work_queue_name("dead"))
        return figures is not None and figures.ready == 1

    wait_until(parked, timeout=10, message="the poisoned order parked in the dead queue")
    # never looped: nothing of it is left to run
    assert platform.spy_bus.queue_figures(platform.spy_bus.work_queue_name("low")).ready == 0
    failed = platform.wait_events("task.failed", poison)
    assert failed and failed[-1].data.get("dead_lettered") is True


def test_sigterm_finishes_running_tasks_then_exits_0(platform):
    worker = platform.start_worker("w-rolling", concurrency=2, TASKHUB_SHUTDOWN_GRACE_SECONDS="15")
    platform.wait_for_worker("w-rolling")
    tasks = [platform.create("example.sleep", context_data={"seconds": 2, "steps": 2}) for _ in range(2)]
    for task in tasks:
        platform.wait_status(task, "running")
    worker.send_signal(signal.SIGTERM)
    late = platform.create("example.noop")  # arrives while it drains: it must not take it
    assert worker.wait(20) == 0
    for task in tasks:  # finished during the drain, results published before the exit
        done = platform.wait_status(task, "completed", "failed", "pending")
        assert (done["status"], done["worker_name"]) == ("completed", "w-rolling")
    # handed to the next worker untouched: still pending, still in its queue
    assert platform.get(late)["status"] == "pending"
    assert platform.spy_bus.queue_figures(platform.spy_bus.work_queue_name("normal")).ready == 1


def test_a_worker_cut_off_past_its_lease_stops_the_attempt_core_revoked(platform):
    frozen = platform.start_worker("w-frozen", concurrency=1)
    platform.wait_for_worker("w-frozen")
    task = platform.create("example.sleep", context_data={"seconds": 4, "steps": 8})
    platform.wait_status(task, "running")
    processes = [psutil.Process(frozen.pid), *psutil.Process(frozen.pid).children(recursive=True)]
    for process in processes:  # a long GC pause, a partition: alive, but silent past its lease
        process.suspend()
    try:
        wait_until(lambda: platform.events_of("task.attempt_revoked", task), timeout=10, message="revoked")
        platform.start_worker("w-rescuer", concurrency=1)
    finally:
        for process in processes:
            process.resume()
    done = platform.wait_status(task, "completed", "failed", timeout=20)
    assert done["status"] == "completed"
    # the revoked attempt 1 was stopped where it ran: only attempt 2 ever completed (the event
    # leaves core's outbox just after the commit the API shows)
    completions = platform.wait_events("task.completed", task)
    assert [c.data["attempt"] for c in completions] == [2]
    assert [h["to_status"] for h in platform.history(task)].count("completed") == 1


def test_a_second_delivery_of_a_running_attempt_is_revoked_where_it_lands(platform):
    # holding nothing beyond what it runs, so that the second delivery goes to the other worker
    first = platform.start_worker("w-first", concurrency=1)
    platform.wait_for_worker("w-first")
    task = platform.create("example.sleep", context_data={"seconds": 10, "steps": 20})
    running = platform.wait_status(task, "running")
    assert running["worker_name"] == "w-first" and first.poll() is None
    # w-first runs a long attempt in its only slot: it takes no more work, the next worker does
    platform.start_worker("w-second", concurrency=1)
    platform.wait_for_worker("w-second")
    # the broker delivers the message again (as after an ack lost with its connection)
    detail = platform.get(task)
    body = {
        "id": task["id"],
        "task_id": task["task_id"],
        "brand_id": 9,
        "task_type": "example.sleep",
        "priority": "normal",
        "context_data": detail["context_data"],
        "attempt": 1,
        "retry_count": 0,
        "max_retries": 3,
        "timeout_minutes": 60,
        "dispatched_at": detail["created_at"],
        "created_at": detail["created_at"],
        "resume": None,
    }
    again = OutgoingMessage(WORK_EXCHANGE, "normal", json.dumps(body).encode(), "dup", {"correlation_id": ""})
    platform.spy_bus.publish([again])
    revoked = wait_until(
        lambda: [
            e for e in platform.events_of("task.attempt_revoked", task) if e.data["worker_name"] == "w-second"
        ],
        timeout=30,
        message="the duplicate revoked on w-second",
    )

    def idle_after_revoke():
        return [
            e
            for e in list(platform.events)
            if e.event_type == "worker.heartbeat"
            and e.data["worker_name"] == "w-second"
            and e.occurred_at > revoked[0].occurred_at
            and not e.data["active_task_ids"]
        ]

    # stopped well before its 10 s copy could have finished
    wait_until(idle_after_revoke, timeout=2, message="w-second stopped its copy")
    done = platform.wait_status(task, "completed")
    assert done["worker_name"] == "w-first"
    assert [c.data["worker_name"] for c in platform.wait_events("task.completed", task)] == ["w-first"]
    assert platform.heartbeats("w-second")[-1]["processed_tasks"] == 0


def test_a_task_deleted_while_it_waits_for_a_slot_is_never_run(platform):
    """Issue 13, finding 6: the worker holding a deleted task's order drops it."""
    platform.start_worker("w-one", concurrency=1)
    platform.wait_for_worker("w-one")
    busy = platform.create("example.sleep", context_data={"seconds": 3, "steps": 3})
    platform.wait_status(busy, "running")
    doomed = platform.create("example.noop")  # waits behind the busy slot
    deleted = platform.client.delete(f"/tasks/{doomed['id']}/", headers=platform.auth.headers())
    assert deleted.status_code == 204
    sentinel = platform.create("example.noop")  # queued after it: once it ran, the other was seen
    platform.wait_status(sentinel, "completed")

    def settled_heartbeat():
        beats = [b for b in platform.heartbeats("w-one") if not b["active_task_ids"]]
        return beats[-1] if beats and beats[-1]["processed_tasks"] >= 2 else None

    beat = wait_until(settled_heartbeat, message="w-one idle after its tasks")
    assert beat["processed_tasks"] == 2  # the busy task and the sentinel: the deleted one never ran
