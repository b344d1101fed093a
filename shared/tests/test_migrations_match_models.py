"""Each service's migrations, run on an empty database, build exactly the schema its models
declare: alembic's autogenerate finds nothing to do. A model changed without a revision (or a
revision that drifts from the model) fails here rather than in production, where `create_app`
builds the schema from the migrations alone."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from shared.config import REPO_ROOT
from shared.db import make_engine
from shared.migrations import upgrade
from shared.testing.fixtures import fresh_postgres_database

# every service with a history of migrations, a new one included
SERVICES = sorted(path.parent.name for path in (REPO_ROOT / "services").glob("*/migrations"))


def differences(service: str, url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        upgrade(service, engine)
        metadata: MetaData = importlib.import_module(f"services.{service}.models").Base.metadata
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("service", SERVICES)
def test_migrations_on_an_empty_postgresql_database_build_the_models(service: str) -> None:
    with fresh_postgres_database() as url:
        assert differences(service, url) == []


# the trigram index is PostgreSQL's alone (core's models.py); SQLite cannot reflect expression
# indexes, so alembic says it skips it
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
@pytest.mark.parametrize("service", SERVICES)
def test_migrations_on_an_empty_sqlite_database_build_the_models(
    service: str, sqlite_url: Callable[[str], str]
) -> None:
    assert differences(service, sqlite_url(service)) == []
