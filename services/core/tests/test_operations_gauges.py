"""The operator's figures core exports (services/core/operations_gauges.py): due tasks waiting for
dispatch and their age, live workers and the newest heartbeat, read as Prometheus would."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from services.core import operations_gauges
from services.core.container import CoreContainer


def figure(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def measured(name: str, **labels: str) -> float:
    """A figure that must be exported."""
    value = figure(name, **labels)
    assert value is not None, f"{name} {labels} is not exported"
    return value


def refresh(container: CoreContainer) -> None:
    with container.uow() as uow:
        operations_gauges.refresh(uow, container.bus, 30)


def test_tasks_no_worker_serves_wait_in_core_and_age(container: CoreContainer, make_task: Any) -> None:
    make_task(task_type="example.noop", priority="high")
    make_task(task_type="example.noop", priority="high")
    refresh(container)
    assert figure("taskhub_tasks_awaiting_dispatch", queue="high") == 2
    assert figure("taskhub_tasks_awaiting_dispatch", queue="low") == 0
    assert measured("taskhub_oldest_awaiting_dispatch_age_seconds", queue="high") >= 0
    assert figure("taskhub_oldest_awaiting_dispatch_age_seconds", queue="low") == 0
    assert figure("taskhub_work_queue_ready_messages", queue="high") is not None


def test_a_heartbeat_makes_a_live_worker_and_dispatch_empties_the_wait(
    container: CoreContainer, make_task: Any, live_worker: Any
) -> None:
    make_task(task_type="example.noop", priority="normal")
    live_worker("example.noop")
    container._dispatch_due()  # what core's dispatcher loop does once a worker serves the type
    refresh(container)
    assert figure("taskhub_workers_live") == 1
    assert 0 <= measured("taskhub_newest_worker_heartbeat_age_seconds") < 30
    assert figure("taskhub_tasks_awaiting_dispatch", queue="normal") == 0
