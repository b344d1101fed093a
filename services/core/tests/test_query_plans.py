"""Every filter and ordering of §1 on a hot path is backed by an index (PostgreSQL plans)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from services.core.container import bootstrap
from services.core.models import Task, search_text
from services.core.query_plans import MAIN_QUERIES, explain
from shared.events.inprocess_bus import InProcessBus
from shared.migrations import upgrade
from shared.testing.fixtures import make_settings


@pytest.fixture
def engine(postgres_url):
    container = bootstrap(make_settings("core", postgres_url), bus=InProcessBus())
    upgrade("core", container.ctx.engine)
    yield container.ctx.engine
    container.ctx.dispose()


@pytest.mark.parametrize("name", list(MAIN_QUERIES))
def test_main_list_queries_can_use_an_index(engine, name):
    plan = explain(engine, MAIN_QUERIES[name], seqscan=False)
    assert "Index" in plan and "Seq Scan on tasks" not in plan, plan


def test_search_uses_the_trigram_index(engine):
    """`search` filters on models.search_text(), the expression the trigram index holds (with its
    parameters bound, as the API runs it): any drift between the two and PostgreSQL scans."""
    stmt = select(Task.id).where(search_text().contains("seo", autoescape=True))
    compiled = stmt.compile(dialect=engine.dialect)
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params))
    assert "ix_tasks_search_trgm" in plan, plan
