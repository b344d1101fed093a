"""The task streams (docs/api.md §1) on SQLite and PostgreSQL: the current state first, each change
once, the end of a one-task stream at a final status, resuming with Last-Event-ID, the list's
filters, keep-alive comments, brand scope, and the per-process cap."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from services.core.app import create_app
from services.core.container import bootstrap
from shared.events.inprocess_bus import InProcessBus
from shared.testing.fixtures import make_settings

OTHER_BRAND = {"id": 10, "name": "Other"}


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    settings = make_settings(
        "core",
        database_url,
        TASKHUB_STREAM_KEEPALIVE_SECONDS="0.3",
        TASKHUB_STREAM_POLL_SECONDS="0.2",
        TASKHUB_MAX_STREAMS="2",
    )
    container = bootstrap(settings, bus=InProcessBus(prefix="t."))
    yield create_app(container=container)
    container.ctx.dispose()


class Stream:
    """An open stream read event by event (the test client hands over each chunk as yielded)."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.chunks = iter(response.response)

    def next_event(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next `task` event (None once the stream ended), skipping comments."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = next(self.chunks)
            except StopIteration:
                return None
            text = chunk.decode() if isinstance(chunk, bytes) else chunk
            if text.startswith("event: task") or "\nevent: task" in text:
                fields = dict(line.split(": ", 1) for line in text.strip().splitlines())
                return {"id": fields["id"], "task": json.loads(fields["data"])}
        raise AssertionError(f"no event within {timeout}s")

    def close(self) -> None:
        self.response.close()


def open_stream(client: Any, path: str, headers: dict[str, str], **kwargs: Any) -> Stream:
    response = client.get(path, headers=headers, buffered=False, **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/event-stream"
    assert response.headers["X-Accel-Buffering"] == "no"
    return Stream(response)


def test_one_task_from_its_current_state_until_final(client: Any, auth: Any, make_task: Any) -> None:
    task = make_task(task_type="example.sleep")
    stream = open_stream(client, f"/tasks/{task['id']}/stream/", auth.headers())
    first = stream.next_event()
    assert first is not None and first["task"]["status"] == "pending"
    assert set(first["task"]) >= {"id", "task_id", "status", "progress_percentage", "updated_at"}
    assert client.post(f"/tasks/{task['id']}/cancel/", headers=auth.headers()).status_code == 200
    last = stream.next_event()
    assert last is not None and last["task"]["status"] == "cancelled"
    assert stream.next_event() is None, "a final task ends its stream"


def test_the_brand_stream_starts_now_and_sends_each_change(client: Any, auth: Any, make_task: Any) -> None:
    before = make_task()
    stream = open_stream(client, "/tasks/stream/", auth.headers())
    created = make_task(task_type="example.sleep")
    event = stream.next_event()
    assert event is not None and event["task"]["id"] == created["id"], "nothing from before the stream"
    assert event["task"]["status"] == "pending"
    client.post(f"/tasks/{created['id']}/cancel/", headers=auth.headers())
    cancelled = stream.next_event()
    assert cancelled is not None and (cancelled["task"]["id"], cancelled["task"]["status"]) == (
        created["id"],
        "cancelled",
    )
    assert before["id"] not in (event["task"]["id"], cancelled["task"]["id"])
    stream.close()

    # resuming after the first event sends what came after it
    resumed = open_stream(client, "/tasks/stream/", auth.headers(**{"Last-Event-ID": event["id"]}))
    again = resumed.next_event()
    while again is not None and again["task"]["status"] != "cancelled":
        again = resumed.next_event()
    assert again is not None and again["task"]["id"] == created["id"]
    resumed.close()


def test_filters_as_the_list(client: Any, auth: Any, make_task: Any) -> None:
    stream = open_stream(client, "/tasks/stream/?task_type=example.flaky", auth.headers())
    make_task(task_type="example.noop")
    wanted = make_task(task_type="example.flaky")
    event = stream.next_event()
    assert event is not None and event["task"]["id"] == wanted["id"]
    stream.close()


def test_keep_alive_comments_while_nothing_changes(client: Any, auth: Any) -> None:
    response = client.get("/tasks/stream/", headers=auth.headers(), buffered=False)
    chunks = iter(response.response)
    seen = [next(chunks) for _ in range(2)]
    text = b"".join(c if isinstance(c, bytes) else c.encode() for c in seen)
    assert b": keep-alive" in text
    response.close()


def test_brand_scope_auth_and_bad_positions(client: Any, auth: Any, make_task: Any) -> None:
    task = make_task()
    hidden = client.get(f"/tasks/{task['id']}/stream/", headers=auth.headers(brand=OTHER_BRAND))
    assert (hidden.status_code, hidden.json["error_code"]) == (404, "TASK_NOT_FOUND")
    not_listed = client.get("/tasks/stream/", headers=auth.headers() | {"X-Brand-ID": "10"})
    assert (not_listed.status_code, not_listed.json["error_code"]) == (403, "BRAND_ACCESS_DENIED")
    assert client.get("/tasks/stream/").status_code == 401
    bad = client.get("/tasks/stream/", headers=auth.headers(**{"Last-Event-ID": "yesterday"}))
    assert bad.status_code == 400 and "Last-Event-ID" in bad.json["field_errors"]
    wrong = client.get("/tasks/stream/?status=sleeping", headers=auth.headers())
    assert wrong.status_code == 400 and "status" in wrong.json["field_errors"]


def test_streams_past_the_process_limit_are_429(client: Any, auth: Any) -> None:
    first = open_stream(client, "/tasks/stream/", auth.headers())
    second = open_stream(client, "/tasks/stream/", auth.headers())
    next(first.chunks), next(second.chunks)  # both started (their slots are taken)
    refused = client.get("/tasks/stream/", headers=auth.headers())
    assert (refused.status_code, refused.json["error_code"]) == (429, "RATE_LIMITED")
    assert refused.headers["Retry-After"]
    first.close()
    third = open_stream(client, "/tasks/stream/", auth.headers())
    third.close()
    second.close()


def test_a_notify_on_the_channel_wakes_the_streams_at_once(postgres_url: str) -> None:
    from sqlalchemy import create_engine, text

    from services.core.streams.changes import CHANNEL, TaskChanges
    from shared.db import normalize_url
    from shared.testing.fixtures import wait_until

    engine = create_engine(normalize_url(postgres_url))
    changes = TaskChanges(poll_seconds=0)  # no timer: only the notification can wake it
    try:
        changes.listen(engine)
        with changes.followed():
            seen = wait_until(lambda: changes.generation, timeout=10, message="the listener is listening")
            with engine.begin() as connection:
                connection.execute(text(f'NOTIFY "{CHANNEL}"'))
            started = time.monotonic()
            assert changes.wait_for_change(seen, timeout=5) != seen
            assert time.monotonic() - started < 2
    finally:
        engine.dispose()  # stops the listener


def test_a_process_without_streams_does_not_listen(postgres_url: str, monkeypatch: Any) -> None:
    """Every task's commits notify the outbox channel: a web process serving no stream must not
    hold a listening connection that wakes it for each of them."""
    from sqlalchemy import create_engine, text

    from services.core.streams import changes as module
    from shared.db import normalize_url
    from shared.testing.fixtures import wait_until

    monkeypatch.setattr(module, "IDLE_GRACE_S", 0.2)
    engine = create_engine(normalize_url(postgres_url))
    changes = module.TaskChanges(poll_seconds=0)

    def listeners() -> int:
        with engine.connect() as connection:
            query = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()"
            return int(connection.execute(text(query)).scalar_one())

    try:
        changes.listen(engine)
        time.sleep(1.5)  # the listener thread has had time to connect, were it going to
        assert listeners() == 0 and not changes.listening
        with changes.followed():
            wait_until(lambda: changes.listening and listeners() == 1, timeout=10, message="listening")
        wait_until(lambda: not changes.listening and listeners() == 0, timeout=10, message="stopped")
    finally:
        engine.dispose()


def test_a_window_full_of_changes_already_sent_does_not_hide_a_new_one(
    client: Any, auth: Any, make_task: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.core.streams import feed

    monkeypatch.setattr(feed, "BATCH", 2)  # the overlap window holds more rows than one query reads
    for _ in range(5):
        make_task()
    stream = open_stream(client, "/tasks/stream/", auth.headers())
    created = make_task(task_type="example.flaky")
    event = stream.next_event()
    assert event is not None and event["task"]["id"] == created["id"]
    stream.close()
