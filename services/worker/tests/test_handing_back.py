"""Orders a worker holds but cannot start soon go back to their queue: when every slot runs an
attempt that outlived the hold window, beyond what its other slots can start beside such an
attempt, and when the worker shuts down. Each goes back as a copy, so another worker runs it as a
first delivery and core counts no worker's death (real PostgreSQL, RabbitMQ, worker processes)."""

from __future__ import annotations

import signal
import socket
import urllib.request

import pytest

from shared.testing.fixtures import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _held_by_workers(platform) -> bool:
    """Nothing ready in the normal queue: its only consumer holds every order."""
    figures = platform.spy_bus.queue_figures(platform.spy_bus.work_queue_name("normal"))
    return figures is not None and figures.ready == 0


def _runs(platform, worker: str, task) -> None:
    """Wait until `worker` runs `task` (its heartbeats list it): what is created next waits behind it."""
    wait_until(
        lambda: any(task["task_id"] in beat["active_task_ids"] for beat in platform.heartbeats(worker)),
        10,
        message=f"{worker} runs {task['task_id']}",
    )


def _warmed_up(platform, worker: str) -> None:
    """`worker` ran a short attempt: from now on it holds more orders than its slots."""
    platform.wait_for_worker(worker)
    assert platform.wait_status(platform.create("example.noop"), "completed")["worker_name"] == worker


def _one_running_three_waiting(platform, worker: str, seconds: float) -> tuple[dict, list[dict]]:
    """`worker` runs a sleep of `seconds` in its only slot and holds three no-op orders behind it."""
    _warmed_up(platform, worker)
    first = platform.create("example.sleep", context_data={"seconds": seconds, "steps": 1})
    _runs(platform, worker, first)
    waiting = [platform.create("example.noop") for _ in range(3)]
    wait_until(lambda: _held_by_workers(platform), 10, 0.05, f"{worker} holds every order")
    return first, waiting


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _handed_back(port: int) -> float:
    """The worker's taskhub_worker_handed_back_total, read from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(
        float(line.split()[1]) for line in lines if line.startswith("taskhub_worker_handed_back_total ")
    )


def _ran_as_first_delivery(platform, task, worker: str) -> None:
    done = platform.wait_status(task, "completed")
    assert done["worker_name"] == worker
    # a redelivered order is announced (attempt.started, with its deliveries) before it runs
    assert platform.events_of("attempt.started", task) == []


def test_orders_waiting_behind_long_attempts_go_to_a_free_worker(platform):
    metrics = _free_port()
    platform.start_worker(
        "w-busy",
        concurrency=1,
        TASKHUB_WORKER_PREFETCH="4",
        TASKHUB_HOLD_SECONDS="3",
        TASKHUB_METRICS_PORT=str(metrics),
        TASKHUB_METRICS_HOST="127.0.0.1",
    )
    # the three wait in w-busy while the long one runs in its only slot, within the hold window
    long, shorts = _one_running_three_waiting(platform, "w-busy", 15)
    # past the hold window w-busy announces the long attempt, so no slot will free soon
    platform.wait_status(long, "running")
    platform.start_worker("w-free", concurrency=1)
    for task in shorts:  # long before the 15 s attempt could have ended
        _ran_as_first_delivery(platform, task, "w-free")
    assert platform.get(long)["status"] == "running"
    assert _handed_back(metrics) == len(shorts)  # once each: none came back to w-busy


def test_a_worker_that_ran_no_short_attempt_yet_holds_only_what_its_slots_can_start(platform):
    metrics = _free_port()
    platform.start_worker(
        "w-fresh",
        concurrency=1,
        TASKHUB_WORKER_PREFETCH="4",
        TASKHUB_METRICS_PORT=str(metrics),
        TASKHUB_METRICS_HOST="127.0.0.1",
    )
    platform.wait_for_worker("w-fresh")
    long = platform.create("example.sleep", context_data={"seconds": 15, "steps": 1})
    _runs(platform, "w-fresh", long)
    shorts = [platform.create("example.noop") for _ in range(3)]
    platform.start_worker("w-free", concurrency=1)
    for task in shorts:
        _ran_as_first_delivery(platform, task, "w-free")
    # a backlog of long jobs is never shuffled: w-fresh never took more than its slot could start
    assert _handed_back(metrics) == 0


def test_beside_a_long_attempt_a_worker_keeps_only_what_its_other_slots_can_start(platform):
    platform.start_worker("w-mixed", concurrency=2, TASKHUB_WORKER_PREFETCH="8", TASKHUB_HOLD_SECONDS="5")
    _warmed_up(platform, "w-mixed")
    # its first progress, after 3 s, makes it a long attempt
    long = platform.create("example.sleep", context_data={"seconds": 15, "steps": 5})
    _runs(platform, "w-mixed", long)
    shorts = [platform.create("test.stubborn", context_data={"seconds": 3}) for _ in range(6)]
    wait_until(lambda: _held_by_workers(platform), 10, 0.05, "w-mixed holds every order")
    platform.wait_status(long, "running")
    # one slot is left for six 3-second tasks: the queue's other workers get most of them
    platform.start_worker("w-other", concurrency=2)
    done = [platform.wait_status(task, "completed", timeout=30) for task in shorts]
    assert sum(1 for task in done if task["worker_name"] == "w-other") >= 2
    assert platform.get(long)["status"] == "running"


def test_a_draining_worker_hands_back_what_waits_without_counting_a_death(platform):
    worker = platform.start_worker(
        "w-leaving",
        concurrency=1,
        TASKHUB_WORKER_PREFETCH="4",
        TASKHUB_HOLD_SECONDS="30",  # never announced: this worker never stops taking on its own
        TASKHUB_SHUTDOWN_GRACE_SECONDS="15",
    )
    first, waiting = _one_running_three_waiting(platform, "w-leaving", 4)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert platform.wait_status(first, "completed")["worker_name"] == "w-leaving"
    queue = platform.spy_bus.work_queue_name("normal")
    wait_until(lambda: getattr(platform.spy_bus.queue_figures(queue), "ready", None) == 3, 10, 0.05, "back")
    platform.start_worker("w-next", concurrency=1)
    for task in waiting:
        _ran_as_first_delivery(platform, task, "w-next")
