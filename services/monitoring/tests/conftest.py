"""monitoring fixtures: app -> client -> helpers. API tests run on SQLite (embedded mode) and on
real PostgreSQL; events are applied through the service's own consumer (inbox included)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from services.monitoring.alerts.egress import EgressPolicy
from services.monitoring.app import create_app
from services.monitoring.container import MonitoringContainer, bootstrap
from shared.events.envelope import Envelope, iso, utcnow
from shared.events.inprocess_bus import InProcessBus
from shared.testing.fixtures import DEFAULT_BRAND, make_settings


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, sqlite_url: Any) -> str:
    if request.param == "sqlite":
        return sqlite_url("monitoring")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def container(database_url: str) -> Iterator[MonitoringContainer]:
    built = bootstrap(make_settings("monitoring", database_url), bus=InProcessBus(prefix="t."))
    allow_test_receivers(built)
    yield built
    built.ctx.dispose()


def allow_test_receivers(container: MonitoringContainer) -> None:
    """The tests' own webhook receivers listen on 127.0.0.1, which production never allows."""
    webhook = container.notifier.webhook
    container.notifier.webhook = replace(webhook, egress=EgressPolicy(allow_loopback=True))


@pytest.fixture
def app(container: MonitoringContainer) -> Flask:
    return create_app(container=container)


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


class Feed:
    """Events as core and the workers send them, applied through monitoring's consumer."""

    def __init__(self, container: MonitoringContainer) -> None:
        self.container = container
        self.consumer = container.consumers()[0]
        self.next_id = 1000

    def apply(self, event_type: str, brand_id: int | None, data: dict[str, Any], **kw: Any) -> Envelope:
        envelope = Envelope(event_type=event_type, producer="test", brand_id=brand_id, data=data, **kw)
        self.consumer.apply(envelope, self.consumer.handlers[event_type])
        return envelope

    def task(self, task_type: str = "seo.analysis", brand: dict = DEFAULT_BRAND, **fields: Any) -> dict:
        self.next_id += 1
        task = {
            "id": self.next_id,
            "task_id": f"task_{self.next_id:012x}",
            "task_type": task_type,
            "status": "pending",
            "priority": "normal",
            "queue_name": "normal",
            "brand": {"id": brand["id"], "name": brand["name"]},
            "max_retries": 3,
            "retry_count": 0,
            "created_at": iso(utcnow()),
            **fields,
        }
        self.apply("task.created", brand["id"], task)
        return task

    def finished(
        self, task: dict, attempt: int = 1, ok: bool = True, at: datetime | None = None, **metrics: Any
    ) -> None:
        """The worker's report of an attempt (`at`: when it ended, default now)."""
        data = {"id": task["id"], "task_id": task["task_id"], "attempt": attempt, "worker_name": "w1"}
        data["metrics"] = {"execution_time_ms": 100.0, **metrics}
        if not ok:
            data.update(error_message="boom", will_retry=False)
        when = {"occurred_at": iso(at)} if at else {}
        self.apply("task.completed" if ok else "task.failed", task["brand"]["id"], data, **when)

    def run(
        self,
        task_type: str = "seo.analysis",
        brand: dict = DEFAULT_BRAND,
        ok: bool = True,
        at: datetime | None = None,
        **metrics: Any,
    ) -> dict:
        task = self.task(task_type, brand)
        self.finished(task, ok=ok, at=at, **metrics)
        return task

    def published(self, event_type: str) -> list[dict[str, Any]]:
        """The data of the events this service wrote to its outbox, oldest first."""
        outbox = self.container.ctx.outbox
        with self.container.ctx.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.body).where(outbox.c.routing_key == event_type).order_by(outbox.c.id)
            ).all()
        return [json.loads(bytes(row.body)) for row in rows]


@pytest.fixture
def feed(container: MonitoringContainer) -> Feed:
    return Feed(container)
