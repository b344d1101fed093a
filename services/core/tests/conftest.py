"""core fixtures: app -> client -> helpers (Flask tutorial style). `core_app` runs every API test
on SQLite (embedded mode) and on real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from services.core.app import create_app
from services.core.container import CoreContainer, bootstrap
from shared.events import catalog
from shared.events.envelope import Envelope
from shared.events.inprocess_bus import InProcessBus
from shared.testing.fixtures import make_settings


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, sqlite_url: Any) -> str:
    if request.param == "sqlite":
        return sqlite_url("core")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def container(database_url: str) -> Iterator[CoreContainer]:
    built = bootstrap(make_settings("core", database_url), bus=InProcessBus(prefix="t."))
    yield built
    built.ctx.dispose()


@pytest.fixture
def app(container: CoreContainer) -> Flask:
    return create_app(container=container)


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


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
