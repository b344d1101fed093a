"""`count` is exact, or the page says `"count_is_exact": false` (docs/api.md §0, issue 13 finding 18):
on PostgreSQL, over more rows than the old exact limit (1,000), through the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, text

from bench.scenarios.read_paths import load_core
from services.core.app import create_app
from services.core.container import bootstrap
from shared import listing
from shared.events.inprocess_bus import InProcessBus
from shared.testing.fixtures import make_settings
from shared.testing.responses import json_body

pytestmark = pytest.mark.integration
ROWS = 9_000


@pytest.fixture
def loaded(postgres_url: str) -> Iterator[tuple[Flask, Any]]:
    container = bootstrap(make_settings("core", postgres_url), bus=InProcessBus(prefix="t."))
    app = create_app(container=container)
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    load_core(url, ROWS)  # the benchmark's read scenario, at a small size
    engine = create_engine(url)
    yield app, engine
    engine.dispose()
    container.ctx.dispose()


def exact(engine: Any, where: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(text(f"SELECT count(*) FROM tasks WHERE brand_id = 9 AND {where}")).scalar_one()
        )


def test_counts_above_a_thousand_are_exact(loaded: tuple[Flask, Any], auth: Any) -> None:
    app, engine = loaded
    client = app.test_client()
    for query, where in [
        ("status=completed", "status = 'completed'"),
        ("", "true"),
        ("task_type=ai.content", "task_type = 'ai.content'"),
    ]:
        page = json_body(client.get(f"/tasks/?{query}&page_size=1", headers=auth.headers()))
        assert exact(engine, where) > 1_000
        assert (page["count"], page["count_is_exact"]) == (exact(engine, where), True), query


def test_a_list_too_large_to_count_in_budget_says_its_count_is_an_estimate(
    loaded: tuple[Flask, Any], auth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _ = loaded
    monkeypatch.setattr(listing, "TRY_EXACT_UP_TO", 100)
    page = json_body(app.test_client().get("/tasks/?page_size=100&page=3", headers=auth.headers()))
    assert page["count_is_exact"] is False
    assert page["count"] > 300  # never below what the pages already showed
    assert page["next"]


def test_filter_values_that_look_like_sql_parameters_are_only_values(
    loaded: tuple[Flask, Any], auth: Any
) -> None:
    """The estimate's EXPLAIN once pasted values into SQL text, where `:x` became a parameter (500)."""
    client = loaded[0].test_client()
    for query in ("queue_name=normal,:x&page=2", "search=%20:x&page_size=1", "search=:x'--"):
        response = client.get(f"/tasks/?{query}", headers=auth.headers())
        assert response.status_code in (200, 404), (query, response.json)
