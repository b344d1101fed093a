"""The per-brand quota of unfinished tasks on POST /tasks/ (docs/limits.md), through the API,
on SQLite and PostgreSQL; and that the default create path, without a quota, runs no query for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from services.core.app import create_app
from services.core.container import bootstrap
from shared.events.inprocess_bus import InProcessBus
from shared.testing.fixtures import OTHER_BRAND, make_settings
from shared.testing.responses import json_body


def _app(database_url: str, **extra: str) -> Iterator[Flask]:
    container = bootstrap(make_settings("core", database_url, **extra), bus=InProcessBus(prefix="t."))
    yield create_app(container=container)
    container.ctx.dispose()


@pytest.fixture
def limited(database_url: str) -> Iterator[Flask]:
    yield from _app(
        database_url, TASKHUB_MAX_ACTIVE_TASKS_PER_BRAND="2", TASKHUB_QUOTA_RETRY_AFTER_SECONDS="7"
    )


def test_a_brand_over_its_quota_is_told_to_come_back_later(limited: Flask, auth: Any) -> None:
    client = limited.test_client()
    created = [
        client.post("/tasks/", json={"task_type": "example.noop"}, headers=auth.headers()) for _ in range(2)
    ]
    assert [r.status_code for r in created] == [201, 201]

    refused = client.post("/tasks/", json={"task_type": "example.noop"}, headers=auth.headers())
    assert refused.status_code == 429, refused.json
    assert json_body(refused)["error_code"] == "RATE_LIMITED"
    assert refused.headers["Retry-After"] == "7"
    assert json_body(client.get("/tasks/", headers=auth.headers()))["count"] == 2  # nothing was created

    # another brand has its own quota
    other = client.post(
        "/tasks/", json={"task_type": "example.noop"}, headers=auth.headers(brand=OTHER_BRAND)
    )
    assert other.status_code == 201

    # a finished task frees its place
    cancelled = client.post(f"/tasks/{json_body(created[0])['id']}/cancel/", headers=auth.headers())
    assert cancelled.status_code == 200, cancelled.json
    assert (
        client.post("/tasks/", json={"task_type": "example.noop"}, headers=auth.headers()).status_code == 201
    )


def test_a_repeat_of_an_idempotency_key_is_answered_even_at_the_quota(limited: Flask, auth: Any) -> None:
    client = limited.test_client()
    keyed = auth.headers(**{"Idempotency-Key": "quota-repeat-1"})
    first = client.post("/tasks/", json={"task_type": "example.noop"}, headers=keyed)
    client.post("/tasks/", json={"task_type": "example.noop"}, headers=auth.headers())
    repeat = client.post("/tasks/", json={"task_type": "example.noop"}, headers=keyed)
    assert repeat.status_code == 200 and json_body(repeat)["id"] == json_body(first)["id"]


def test_without_a_quota_the_create_path_runs_no_query_for_it(database_url: str, auth: Any) -> None:
    statements: dict[str, list[str]] = {}
    for label, extra in (("off", {}), ("on", {"TASKHUB_MAX_ACTIVE_TASKS_PER_BRAND": "1000"})):
        for app in _app(database_url, **extra):
            seen: list[str] = []
            engine = app.extensions["core"].ctx.engine

            def listener(*args: Any, seen: list[str] = seen) -> None:
                seen.append(args[2])  # (conn, cursor, statement, ...)

            event.listen(engine, "before_cursor_execute", listener)
            response = app.test_client().post(
                "/tasks/", json={"task_type": "example.noop"}, headers=auth.headers()
            )
            event.remove(engine, "before_cursor_execute", listener)
            assert response.status_code == 201
            statements[label] = seen
    assert not [s for s in statements["off"] if "count(" in s.lower()]
    assert len(statements["on"]) == len(statements["off"]) + 1
