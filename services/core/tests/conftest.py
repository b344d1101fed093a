"""core fixtures: app -> client -> helpers (Flask tutorial style). `core_app` runs every API test
on SQLite (embedded mode) and on real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from services.core.app import SERVICE
from services.core.container import CoreContainer
from shared.events import catalog
from shared.events.envelope import Envelope
from shared.testing.service_fixtures import service_fixtures

database_url, container, app, client = service_fixtures(SERVICE)


@pytest.fixture
def make_task(client: Any, auth: Any) -> Any:
    def make(**fields: Any) -> dict[str, Any]:
        body = {"task_type": "example.noop", **fields}
        headers = fields.pop("headers", None) or auth.headers()
        body.pop("headers", None)
        response = client.post("/tasks/", json=body, headers=headers)
        assert response.status_code == 201, response.json
        return response.json

    return make


@pytest.fixture
def live_worker(container: CoreContainer, app: Flask) -> Any:
    """Announce a worker serving `types` (its heartbeat), as a running worker would."""

    def announce(*types: str, name: str = "w1", active: list[catalog.ActiveAttempt] | None = None) -> None:
        heartbeat = catalog.WorkerHeartbeat(
            worker_name=name,
            queues=["critical", "high", "normal", "low"],
            concurrency=4,
            task_types=[{"name": t, "priority": "normal"} for t in types],
            active_task_ids=[a.task_id for a in active or []],
            active_tasks=active or [],
        )
        heartbeats = container.consumers()[1]
        heartbeats.apply([Envelope.of(heartbeat, None)])
        container.registry.invalidate()

    return announce
