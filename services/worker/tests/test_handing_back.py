"""Orders a worker holds but cannot start soon go back to their queue: behind attempts that all
outlived the hold window, and when the worker shuts down. Each goes back as a copy, so another
worker runs it as a first delivery and core counts no worker's death (real PostgreSQL, RabbitMQ,
worker processes)."""

from __future__ import annotations

import signal

import pytest

from shared.testing.fixtures import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _held_by_workers(platform) -> bool:
    """Nothing ready in the normal queue: its only consumer holds every order."""
    figures = platform.spy_bus.queue_figures(platform.spy_bus.work_queue_name("normal"))
    return figures is not None and figures.ready == 0


def _ran_as_first_delivery(platform, task, worker: str) -> None:
    done = platform.wait_status(task, "completed")
    assert done["worker_name"] == worker
    # a redelivered order is announced (attempt.started, with its deliveries) before it runs
    assert platform.events_of("attempt.started", task) == []


def test_orders_waiting_behind_long_attempts_go_to_a_free_worker(platform):
    platform.start_worker("w-busy", concurrency=1, TASKHUB_WORKER_PREFETCH="4")
    platform.wait_for_worker("w-busy")
    long = platform.create("example.sleep", context_data={"seconds": 15, "steps": 1})
    shorts = [platform.create("example.noop") for _ in range(3)]
    # the three wait in w-busy while the long one runs in its only slot (within the hold window)
    wait_until(lambda: _held_by_workers(platform), 10, 0.05, "w-busy holds every order")
    # past the hold window w-busy announces the long attempt, so no slot will free soon
    platform.wait_status(long, "running")
    platform.start_worker("w-free", concurrency=1)
    for task in shorts:  # long before the 15 s attempt could have ended
        _ran_as_first_delivery(platform, task, "w-free")
    assert platform.get(long)["status"] == "running"


def test_a_draining_worker_hands_back_what_waits_without_counting_a_death(platform):
    worker = platform.start_worker(
        "w-leaving",
        concurrency=1,
        TASKHUB_WORKER_PREFETCH="4",
        TASKHUB_HOLD_SECONDS="30",  # never announced: this worker never stops taking on its own
        TASKHUB_SHUTDOWN_GRACE_SECONDS="15",
    )
    platform.wait_for_worker("w-leaving")
    first = platform.create("example.sleep", context_data={"seconds": 2, "steps": 1})
    waiting = [platform.create("example.noop") for _ in range(3)]
    wait_until(lambda: _held_by_workers(platform), 10, 0.05, "w-leaving holds every order")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert platform.wait_status(first, "completed")["worker_name"] == "w-leaving"
    figures = platform.spy_bus.queue_figures(platform.spy_bus.work_queue_name("normal"))
    assert figures is not None and figures.ready == len(waiting)
    platform.start_worker("w-next", concurrency=1)
    for task in waiting:
        _ran_as_first_delivery(platform, task, "w-next")
