"""The fixtures every service's test suite starts from, built for one service:

    # services/<name>/tests/conftest.py
    database_url, container, app, client = service_fixtures(SERVICE)

- `database_url`: each test runs twice, on SQLite (a file: the embedded mode) and on a fresh
  PostgreSQL database;
- `container`: the service's composition root on that database and an in-process bus of the
  test's own, disposed afterwards (`prepare(container)` adjusts it first, e.g. a test policy);
- `app`: `create_service_app` on that container (it migrates the database);
- `client`: the app's Flask test client.

A suite that needs another container (a fake clock, a migrated database shared by the session)
defines its own `container` or `database_url` fixture beside these; pytest takes the nearest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from shared.events.inprocess_bus import InProcessBus
from shared.service_app import ServiceApp, create_service_app
from shared.service_container import ServiceContainer
from shared.testing.fixtures import make_settings


def service_fixtures(
    service: ServiceApp, prepare: Callable[[Any], None] | None = None
) -> tuple[Any, Any, Any, Any]:
    @pytest.fixture(params=["sqlite", "postgres"])
    def database_url(request: pytest.FixtureRequest, sqlite_url: Any) -> str:
        if request.param == "sqlite":
            return sqlite_url(service.name)
        return request.getfixturevalue("postgres_url")

    @pytest.fixture
    def container(database_url: str) -> Iterator[ServiceContainer]:
        built = service.bootstrap(make_settings(service.name, database_url), bus=InProcessBus(prefix="t."))
        if prepare is not None:
            prepare(built)
        yield built
        built.ctx.dispose()

    @pytest.fixture
    def app(container: ServiceContainer) -> Flask:
        return create_service_app(service, container=container)

    @pytest.fixture
    def client(app: Flask) -> Any:
        return app.test_client()

    return database_url, container, app, client
