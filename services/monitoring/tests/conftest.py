"""monitoring fixtures: app -> client -> helpers. API tests run on SQLite (embedded mode) and on
real PostgreSQL; events are applied through the service's own consumer (inbox included)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from services.monitoring.alerts.egress import EgressPolicy
from services.monitoring.app import SERVICE
from services.monitoring.container import MonitoringContainer
from shared.events.catalog import AttemptMetrics, Event, TaskCompleted, TaskFailed
from shared.events.envelope import Envelope, iso, utcnow
from shared.testing.core_events import task_created
from shared.testing.fixtures import DEFAULT_BRAND
from shared.testing.service_fixtures import service_fixtures


def allow_test_receivers(container: MonitoringContainer) -> None:
    """The tests' own webhook receivers listen on 127.0.0.1, which production never allows."""
    webhook = container.notifier.webhook
    container.notifier.webhook = replace(webhook, egress=EgressPolicy(allow_loopback=True))


database_url, container, app, client = service_fixtures(SERVICE, prepare=allow_test_receivers)


class Feed:
    """Core's task events and the workers' heartbeats as their producers build them (the catalog's
    classes), applied through monitoring's consumer, inbox included: one at a time by default,
    or several in one batch (`apply_batch`), as the subscription hands them over."""

    def __init__(self, container: MonitoringContainer) -> None:
        self.container = container
        self.consumer = container.consumers()[0]
        self.next_id = 1000

    @staticmethod
    def envelope(event: Event, brand_id: int | None, at: datetime | None = None) -> Envelope:
        """The envelope of `event` (`at`: when it happened, default now)."""
        envelope = Envelope.of(event, brand_id)
        return replace(envelope, occurred_at=iso(at)) if at else envelope

    def apply(self, event: Event, brand_id: int | None, at: datetime | None = None) -> Envelope:
        return self.apply_batch([self.envelope(event, brand_id, at)])[0]

    def apply_batch(self, envelopes: list[Envelope]) -> list[Envelope]:
        self.consumer.apply(envelopes)
        return envelopes

    def new_task(
        self, task_type: str = "seo.analysis", brand: dict = DEFAULT_BRAND, **fields: Any
    ) -> Envelope:
        """Core's task.created for a new task (not applied)."""
        self.next_id += 1
        now = iso(utcnow())
        brand_ref = {"id": brand["id"], "name": brand["name"]}
        defaults = {"task_type": task_type, "brand": brand_ref, "created_at": now, "updated_at": now}
        created = task_created(self.next_id, **(defaults | fields))
        return self.envelope(created, brand["id"])

    def task(self, task_type: str = "seo.analysis", brand: dict = DEFAULT_BRAND, **fields: Any) -> dict:
        """A task core created (task.created applied); returns the event's data."""
        [created] = self.apply_batch([self.new_task(task_type, brand, **fields)])
        return created.data

    def outcome(
        self,
        task: dict,
        attempt: int = 1,
        ok: bool = True,
        at: datetime | None = None,
        will_retry: bool = False,
        retry_count: int = 0,
        **metrics: Any,
    ) -> Envelope:
        """Core's task.completed / task.failed for an attempt that ended `at` (default now), with
        the worker's metrics (`execution_time_ms` 100 unless given)."""
        ended = iso(at or utcnow())
        known = {k: v for k, v in metrics.items() if k in AttemptMetrics.__struct_fields__}
        summary: dict[str, Any] = {
            "id": task["id"],
            "task_id": task["task_id"],
            "attempt": attempt,
            "worker_name": "w1",
            "task_type": task.get("task_type", "seo.analysis"),
            "priority": task.get("priority", "normal"),
            "retry_count": retry_count,
            "max_retries": task.get("max_retries", 3),
            "created_at": task.get("created_at"),
            "started_at": ended,
            "completed_at": ended,
            "metrics": AttemptMetrics(**{"execution_time_ms": 100.0, "retry_count": retry_count, **known}),
        }
        event: Event
        if ok:
            event = TaskCompleted(**summary, result_data={})
        else:
            event = TaskFailed(**summary, error_message="boom", will_retry=will_retry)
        envelope = self.envelope(event, task["brand"]["id"], at)
        # figures AttemptMetrics does not name still count (a worker may measure more)
        envelope.data["metrics"].update({k: v for k, v in metrics.items() if k not in known})
        return envelope

    def finished(
        self, task: dict, attempt: int = 1, ok: bool = True, at: datetime | None = None, **kw: Any
    ) -> None:
        self.apply_batch([self.outcome(task, attempt, ok, at, **kw)])

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
def feed(container: MonitoringContainer, app: Flask) -> Feed:
    """Events for the app's database (create_app migrates it)."""
    return Feed(container)
