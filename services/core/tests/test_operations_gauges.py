"""The operator's figures core exports (services/core/operations_gauges.py): due tasks waiting for
dispatch and their age, live workers and the newest heartbeat, the work queues' depth, read when
core's /metrics is scraped, as Prometheus would; and a scrape that answers when the database or
the broker is away, without these figures."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from services.core.app import SERVICE
from services.core.container import CoreContainer, bootstrap
from shared.events.inprocess_bus import InProcessBus
from shared.events.rabbitmq_bus import RabbitMQBus
from shared.service_app import create_service_app
from shared.task_states import PRIORITIES
from shared.testing.fixtures import make_settings
from shared.testing.scraped_metrics import sample, scrape


def measured(text: str, name: str, **labels: str) -> float:
    """A figure that must be exported."""
    value = sample(text, name, **labels)
    assert value is not None, f"{name} {labels} is not exported"
    return value


def test_tasks_no_worker_serves_wait_in_core_and_age(client: Any, make_task: Any) -> None:
    make_task(task_type="example.noop", priority="high")
    make_task(task_type="example.noop", priority="high")
    text = scrape(client)
    assert sample(text, "taskhub_tasks_awaiting_dispatch", queue="high") == 2
    assert sample(text, "taskhub_tasks_awaiting_dispatch", queue="low") == 0
    assert measured(text, "taskhub_oldest_awaiting_dispatch_age_seconds", queue="high") >= 0
    assert sample(text, "taskhub_oldest_awaiting_dispatch_age_seconds", queue="low") == 0
    for queue in PRIORITIES:
        assert sample(text, "taskhub_work_queue_ready_messages", queue=queue) == 0
    assert sample(text, "taskhub_workers_live") == 0
    assert sample(text, "taskhub_newest_worker_heartbeat_age_seconds") is None  # no heartbeat yet


def test_a_heartbeat_makes_a_live_worker_and_dispatch_moves_the_wait_to_the_queue(
    container: CoreContainer, client: Any, make_task: Any, live_worker: Any
) -> None:
    make_task(task_type="example.noop", priority="normal")
    live_worker("example.noop")
    container._dispatch_due()  # what core's dispatcher loop does once a worker serves the type
    container.ctx.relay().publish_pending()  # and the relay: the work order is in the broker
    text = scrape(client)
    assert sample(text, "taskhub_workers_live") == 1
    assert 0 <= measured(text, "taskhub_newest_worker_heartbeat_age_seconds") < 30
    assert sample(text, "taskhub_tasks_awaiting_dispatch", queue="normal") == 0
    assert sample(text, "taskhub_work_queue_ready_messages", queue="normal") == 1


def test_no_background_loop_reads_the_figures(container: CoreContainer) -> None:
    """They are read on scrape only (issue 12: nothing queries on a timer when nothing changed)."""
    names = [loop.name for loop in container.background_loops()]
    assert names and not [name for name in names if "gauge" in name or "figures" in name], names
    assert "core.dispatcher" in names  # the list is the real one


def test_a_scrape_without_the_broker_answers_with_the_database_figures(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # nothing listens on port 1: every connection is refused
    bus = RabbitMQBus("amqp://guest:guest@127.0.0.1:1/%2F", prefix="t.")
    container = bootstrap(make_settings("core", database_url), bus=bus)
    try:
        client = create_service_app(SERVICE, container=container).test_client()
        with caplog.at_level(logging.WARNING, logger="shared.prometheus_metrics"):
            text = scrape(client)
        assert sample(text, "taskhub_tasks_awaiting_dispatch", queue="normal") == 0
        assert sample(text, "taskhub_workers_live") == 0
        assert "taskhub_work_queue_ready_messages{" not in text  # unknown, not 0
        assert "taskhub_dead_letters{" not in text
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 2 and all("left out of /metrics" in w for w in warned), warned
    finally:
        container.ctx.dispose()
        bus.close()


def test_a_scrape_without_the_database_answers_with_the_broker_figures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(
        "core", "postgresql+psycopg://postgres@127.0.0.1:1/gone", TASKHUB_AUTO_MIGRATE="false"
    )
    container = bootstrap(settings, bus=InProcessBus(prefix="t."))
    try:
        client = create_service_app(SERVICE, container=container).test_client()
        with caplog.at_level(logging.WARNING, logger="shared.prometheus_metrics"):
            text = scrape(client)
        assert "taskhub_tasks_awaiting_dispatch{" not in text and "taskhub_workers_live " not in text
        assert sample(text, "taskhub_work_queue_ready_messages", queue="high") == 0
        assert sample(text, "taskhub_dead_letters", service="core", queue="core.reports") == 0
        assert [r.getMessage() for r in caplog.records if "left out of /metrics" in r.getMessage()]
    finally:
        container.ctx.dispose()
