"""scheduling fixtures. `database_url` runs every API and firing test on SQLite (embedded mode)
and on real PostgreSQL. Time is a FakeClock the tests move: no test waits for a minute to pass."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text
from werkzeug.serving import make_server

from services.scheduling.app import SERVICE, create_app
from services.scheduling.container import SchedulingContainer, bootstrap
from services.scheduling.models import Base
from services.scheduling.scheduler import Scheduler
from shared.background import Loop, start_loops
from shared.db import make_engine
from shared.events.bus import EventBus
from shared.events.catalog import (
    Event,
    TaskCreated,
    TaskEvent,
)
from shared.events.envelope import Envelope
from shared.events.inprocess_bus import InProcessBus
from shared.migrations import upgrade
from shared.testing import core_events
from shared.testing.fixtures import fresh_postgres_database, make_settings
from shared.testing.service_fixtures import service_fixtures

# a port nothing listens on: calls to core fail at once unless a test starts core
NO_CORE = "http://127.0.0.1:9"


class FakeClock:
    """A clock the test moves. A sleeping scheduler computed its sleep from this clock, not from
    the time that passes: `on_move` callbacks (its wake-up) tell it the time jumped."""

    def __init__(self, start: datetime) -> None:
        self.moment = start
        self._lock = threading.Lock()
        self.on_move: list[Callable[[], None]] = []

    def __call__(self) -> datetime:
        with self._lock:
            return self.moment

    def set(self, moment: datetime) -> None:
        with self._lock:
            self.moment = moment
        self._moved()

    def advance(self, **delta: float) -> datetime:
        with self._lock:
            self.moment += timedelta(**delta)
            moment = self.moment
        self._moved()
        return moment

    def _moved(self) -> None:
        for callback in self.on_move:
            callback()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC))


@pytest.fixture(scope="session")
def migrated_postgres_url() -> Iterator[str]:
    """One migrated PostgreSQL database for the session; each test starts from empty tables
    (TRUNCATE is milliseconds, CREATE/DROP DATABASE seconds on a busy shared server)."""
    with fresh_postgres_database() as url:
        engine = make_engine(url)
        upgrade("scheduling", engine)
        engine.dispose()
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, sqlite_url: Any) -> str:
    if request.param == "sqlite":
        return sqlite_url("scheduling")
    return emptied(request.getfixturevalue("migrated_postgres_url"))


def emptied(url: str) -> str:
    """The session's PostgreSQL database with empty tables."""
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


def build_container(
    database_url: str, clock: FakeClock, bus: EventBus | None = None, core_url: str = NO_CORE
) -> SchedulingContainer:
    settings = make_settings("scheduling", database_url, TASKHUB_CORE_URL=core_url)
    container = bootstrap(settings, bus=bus or InProcessBus(prefix="t."), clock=clock)
    container.core.timeout = 2.0
    return container


@pytest.fixture
def container(database_url: str, clock: FakeClock) -> Iterator[SchedulingContainer]:
    built = build_container(database_url, clock)
    yield built
    built.ctx.dispose()


# database_url and container are this suite's own (a migrated database shared by the session, a
# FakeClock)
app, client = service_fixtures(SERVICE)[2:]


@pytest.fixture
def scheduler(container: SchedulingContainer, app: Flask) -> Scheduler:
    return Scheduler(container)


P = "/tasks/scheduled/periodic-tasks/"


@pytest.fixture
def make_schedule(client: Any, auth: Any) -> Callable[..., dict[str, Any]]:
    def make(headers: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
        body = {"task_type": "example.noop", "cron_expression": "* * * * *", **fields}
        response = client.post(P, json=body, headers=headers or auth.headers())
        assert response.status_code == 201, response.json
        return response.json

    return make


@dataclass
class Platform:
    """core and scheduling on one in-process bus, each with its loops on threads; core also
    served over real HTTP (scheduling's run-now and base_task calls go through it)."""

    core: Any
    core_client: Any
    scheduling: SchedulingContainer
    client: Any
    stop: threading.Event


@pytest.fixture
def platform(database_url: str, sqlite_url: Any, clock: FakeClock) -> Iterator[Platform]:
    from services.core.app import create_app as create_core_app
    from services.core.container import bootstrap as bootstrap_core

    bus = InProcessBus(prefix="t.")
    core = bootstrap_core(make_settings("core", sqlite_url("core")), bus=bus)
    core_app = create_core_app(container=core)
    server = make_server("127.0.0.1", 0, core_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sched = build_container(database_url, clock, bus=bus, core_url=f"http://127.0.0.1:{server.server_port}")
    sched_app = create_app(container=sched)
    stop = threading.Event()
    scheduler = Scheduler(sched)
    clock.on_move.append(scheduler.wakeup.set)
    loops = [*core.background_loops(), *sched.background_loops(), Loop("scheduler", scheduler.run)]
    threads = start_loops(loops, stop)
    yield Platform(core, core_app.test_client(), sched, sched_app.test_client(), stop)
    stop.set()
    for thread in threads:
        thread.join(5)
    server.shutdown()
    sched.ctx.dispose()
    core.ctx.dispose()


def task_created(pk: int, key: str | None = None, **fields: Any) -> TaskCreated:
    """core's task.created (what the test does not care about is filled in); `key`: the slot
    key of the run that created it."""
    origin = {"idempotency_key": key} if key else None
    run = {"task_id": f"task_{pk}", "is_periodic": key is not None, "origin": origin}
    return core_events.task_created(pk, **(run | fields))


def core_event(event_type: type[TaskEvent], pk: int, **fields: Any) -> TaskEvent:
    """core's event `event_type` about task `pk`, its required fields filled in."""
    return core_events.task_event(event_type, pk, f"task_{pk}", **fields)


def deliver(container: SchedulingContainer, *events: Event, brand_id: int = 9) -> list[Envelope]:
    """Apply core's events through scheduling's consumer, as one batch."""
    envelopes = [Envelope.of(event, brand_id) for event in events]
    container.consumers()[0].apply(envelopes)
    return envelopes


# for checks that never reach the database differently (validation, pure time logic driven
# through the API): SQLite only, so the suite stays fast on a shared machine
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
