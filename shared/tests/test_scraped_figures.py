"""The figures read on scrape (shared/prometheus_metrics.py `ScrapedFigures`): a read serves the
scrapes of a few seconds, a failed read leaves its figures out and warns once; every service's
/metrics shows its consumers' dead letters (a parked event counts), once per scrape, in `make run`
too; and no background loop reads them on a timer any more."""

from __future__ import annotations

import importlib
import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from werkzeug.test import Client

from services.core.app import SERVICE as CORE
from services.core.container import bootstrap as core_bootstrap
from shared.events.bus import EVENTS_EXCHANGE, Delivery, EventBus, OutgoingMessage
from shared.events.inprocess_bus import InProcessBus
from shared.prometheus_metrics import ScrapedFigures
from shared.routes import SERVICES
from shared.service_app import create_service_app
from shared.testing.fixtures import JWT_SECRET, make_settings, wait_until
from shared.testing.scraped_metrics import sample, scrape

from .conftest import Runner

DEADLINE = 15.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counting(figure: Callable[[], float]) -> tuple[list[int], Callable[[], list[Metric]]]:
    reads: list[int] = []

    def read() -> list[Metric]:
        reads.append(1)
        return [GaugeMetricFamily("taskhub_test_figure", "a test figure", value=figure())]

    return reads, read


def values(figures: ScrapedFigures) -> list[float]:
    return [s.value for family in figures.collect() for s in family.samples]


def test_a_read_serves_the_scrapes_of_the_next_seconds() -> None:
    clock, figure = Clock(), iter(range(1, 10))
    reads, read = counting(lambda: next(figure))
    figures = ScrapedFigures("test figures", read, cache_seconds=5, clock=clock)
    assert [values(figures), values(figures)] == [[1], [1]]
    clock.now += 4.9
    assert values(figures) == [1] and len(reads) == 1
    clock.now += 0.1
    assert values(figures) == [2] and len(reads) == 2


def test_a_failed_read_leaves_the_figures_out_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    clock, away = Clock(), [True]

    def figure() -> float:
        if away[0]:
            raise ConnectionRefusedError("the database is away")
        return 7

    reads, read = counting(figure)
    figures = ScrapedFigures("test figures", read, cache_seconds=5, clock=clock)
    with caplog.at_level(logging.INFO, logger="shared.prometheus_metrics"):
        assert values(figures) == []
        clock.now += 5
        assert values(figures) == [] and len(reads) == 2  # asked again once the cache is stale
        away[0] = False
        clock.now += 5
        assert values(figures) == [7]
    logged = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert logged == [
        (
            "WARNING",
            "figures left out of /metrics: test figures unavailable: "
            "ConnectionRefusedError('the database is away')",
        ),
        ("INFO", "figures back on /metrics: test figures"),
    ]


@pytest.mark.unchecked_events  # the poison is not a catalog event
def test_a_parked_event_shows_in_the_dead_letter_gauge_of_its_service(
    bus: EventBus, runner: Runner, sqlite_url: Any
) -> None:
    def poisoned(delivery: Delivery) -> None:
        raise RuntimeError("poison")

    runner.start(bus.subscription("core.reports", ["tests.poison"], poisoned, max_deliveries=2))
    message_id = str(uuid.uuid4())
    body = json.dumps({"event_id": message_id, "event_type": "tests.poison", "data": {}}).encode()
    bus.publish([OutgoingMessage(EVENTS_EXCHANGE, "tests.poison", body, message_id, {})])
    wait_until(lambda: bus.dead_letters(bus.prefix + "core.reports") == 1, DEADLINE, message="parked")

    container = core_bootstrap(make_settings("core", sqlite_url("core")), bus=bus)
    try:
        text = scrape(create_service_app(CORE, container=container).test_client())
    finally:
        container.ctx.dispose()
    assert sample(text, "taskhub_dead_letters", service="core", queue="core.reports") == 1
    assert sample(text, "taskhub_dead_letters", service="core", queue="core.heartbeats") == 0


def test_make_run_shows_every_service_s_read_figures_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from shared.embedded import build_platform

    monkeypatch.delenv("AMQP_URL", raising=False)
    monkeypatch.setenv("JWT_SECRET", JWT_SECRET)
    for service in SERVICES:
        monkeypatch.setenv(f"{service.upper()}_DATABASE_URL", f"sqlite:///{tmp_path / service}.db")
    router, _ = build_platform()
    response = Client(router).get("/metrics")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    shown = 0
    for service, app in router.apps.items():
        container = app.extensions[service]
        for consumer in container.consumers():  # `sample` fails on a figure shown twice
            queue = container.queue_of(consumer)
            assert sample(text, "taskhub_dead_letters", service=service, queue=queue) == 0, queue
            shown += 1
    assert shown >= len(SERVICES)
    assert sample(text, "taskhub_workers_live") == 0
    assert sample(text, "taskhub_tasks_awaiting_dispatch", queue="normal") == 0


def test_under_gunicorn_the_read_figures_come_once_beside_the_multiprocess_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: Any
) -> None:
    """`make up`, Kubernetes: /metrics renders the folder every process of the service writes,
    which holds no read figure; the app that answers adds its own, once."""
    folder = tmp_path / "prometheus"  # apart from the test's SQLite files (the collector reads *.db)
    folder.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    container = core_bootstrap(make_settings("core", sqlite_url("core")), bus=InProcessBus(prefix="t."))
    try:
        text = scrape(create_service_app(CORE, container=container).test_client())
    finally:
        container.ctx.dispose()
    assert sample(text, "taskhub_dead_letters", service="core", queue="core.reports") == 0
    assert sample(text, "taskhub_workers_live") == 0
    assert "python_gc_objects_collected_total" not in text  # the folder's figures, not this process's


def test_no_background_loop_of_any_service_reads_figures_on_a_timer(sqlite_url: Any) -> None:
    """Issue 12: the dead letters, queue depths and due tasks are read on scrape only."""
    for service in SERVICES:
        module = importlib.import_module(f"services.{service}.container")
        container = module.bootstrap(make_settings(service, sqlite_url(service)), bus=InProcessBus())
        try:
            names = [loop.name for loop in container.background_loops()]
            assert f"{service}.relay" in names  # the real list
            assert not [n for n in names if "gauge" in n or "dead-letter" in n or "figures" in n], names
            assert container.scraped_figures()  # what they read is on its /metrics instead
        finally:
            container.ctx.dispose()
    assert not hasattr(importlib.import_module("shared.background"), "every")  # no timer loops at all
