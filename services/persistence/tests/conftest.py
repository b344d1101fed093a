"""persistence fixtures: every API test runs on SQLite (embedded mode) and on real PostgreSQL.
Core's tasks reach this service as core's events; `events.task` and `events.core` feed them
through the consumer as the broker would (a plain task's events never reach it: they lack the
`persistent` header), and `published` reads what this service wrote to its outbox (what the relay
puts on the bus). `core` is a real core served over HTTP, for the calls this service makes to it."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from services.persistence.app import SERVICE
from services.persistence.container import PersistenceContainer
from shared.core_client import CoreTasks
from shared.events.catalog import (
    Event,
    TaskCreated,
    TaskEvent,
    TaskOutcome,
    to_data,
)
from shared.events.envelope import Envelope
from shared.events.inprocess_bus import InProcessBus
from shared.events.outbox_relay import OutboxRelay
from shared.machine_identity import ATTEMPT, CORE, machine_issuer
from shared.testing import core_events
from shared.testing.fixtures import DEFAULT_BRAND, make_settings, wait_until
from shared.testing.service_fixtures import service_fixtures
from tests.integration.event_schemas import validator

_task_ids = itertools.count(1000)
# for checks of request validation and roles, which no database behaviour can change
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


database_url, container, app, client = service_fixtures(SERVICE)


@pytest.fixture
def consumer(container: PersistenceContainer) -> Any:
    return container.consumers()[0]


def task_created(pk: int, **fields: Any) -> TaskCreated:
    """core's task.created of a persistent task (what the test does not care about is filled in)."""
    return core_events.task_created(pk, **({"task_type": "example.batch", "persistent": True} | fields))


class Events:
    """Feeds core's events to the consumer (built with the catalog's classes, as core builds
    them), and reads what this service put on its bus: the outbox relay publishes to the
    in-process bus, a spy queue bound to `#` records."""

    def __init__(self, container: PersistenceContainer, consumer: Any) -> None:
        self.container, self.consumer = container, consumer
        self.relay = OutboxRelay(container.ctx.engine, container.ctx.outbox, container.bus, "persistence")
        self.received: list[bytes] = []
        self.sent = 0
        self.stop = threading.Event()
        spy = container.bus.subscription("test-spy", ["#"], lambda d: self.received.append(d.body))
        self.thread = threading.Thread(target=spy.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def send(self, event: Event, brand: dict[str, Any] = DEFAULT_BRAND, persistent: bool = True) -> Envelope:
        """Delivered unless the broker would drop it: an event of a plain task (no `persistent`
        header) of a type bound through the filter."""
        envelope = Envelope.of(event, brand["id"])
        if persistent or envelope.event_type not in self.consumer.filtered:
            self.consumer.apply([envelope])
        return envelope

    def task(self, brand: dict[str, Any] = DEFAULT_BRAND, persistent: bool = True, **fields: Any) -> dict:
        created = task_created(fields.pop("id", None) or next(_task_ids), persistent=persistent, **fields)
        self.send(created, brand, persistent=persistent)
        return to_data(created)

    def core(
        self, event_type: type[TaskEvent], task: dict, brand: dict = DEFAULT_BRAND, **fields: Any
    ) -> Envelope:
        """core's event `event_type` about `task` (an outcome gets the task's summary)."""
        summary = {
            "task_type": task.get("task_type", "example.batch"),
            "priority": task.get("priority", "normal"),
        }
        if not issubclass(event_type, TaskOutcome):
            summary = {}
        return self.send(
            core_events.task_event(event_type, task["id"], task["task_id"], **(summary | fields)), brand
        )

    def published(self, event_type: str | None = None) -> list[Envelope]:
        """Every event published so far (each checked against its schema in docs/events/)."""
        while published := self.relay.publish_pending():  # the relay deletes what it published
            self.sent += published
        wait_until(lambda: len(self.received) >= self.sent, 5, message="events reach the spy")
        envelopes = []
        for body in list(self.received):
            envelope = Envelope.from_json(body)
            check = validator(envelope.event_type)
            assert check is not None, f"{envelope.event_type} has no schema in docs/events/"
            errors = [e.message for e in check.iter_errors(json.loads(body))]
            assert not errors, (envelope.event_type, errors)
            envelopes.append(envelope)
        return [e for e in envelopes if event_type is None or e.event_type == event_type]

    def close(self) -> None:
        self.stop.set()  # the daemon spy ends at its next wake-up; nothing waits for it


@pytest.fixture
def events(container: PersistenceContainer, consumer: Any) -> Iterator[Events]:
    spy = Events(container, consumer)
    yield spy
    spy.close()


class Core:
    """A real core (SQLite, an in-process bus of its own, no loops) served over HTTP; `task`
    creates a task in it, of which persistence hears nothing."""

    def __init__(self, directory: Path) -> None:
        from services.core.app import create_app
        from services.core.container import bootstrap

        self.container = bootstrap(
            make_settings("core", f"sqlite:///{directory / 'core.db'}"), bus=InProcessBus(prefix="core.")
        )
        self.client: Any = create_app(container=self.container).test_client()
        self.server = make_server("127.0.0.1", 0, self.client.application, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def task(self, auth: Any, brand: dict[str, Any] = DEFAULT_BRAND, **fields: Any) -> dict[str, Any]:
        body = {"task_type": "seo.analysis", **fields}
        response = self.client.post("/tasks/", json=body, headers=auth.headers(brand=brand))
        assert response.status_code == 201, response.json
        return response.json

    def close(self) -> None:
        self.server.shutdown()
        self.container.ctx.dispose()


@pytest.fixture(scope="session")
def core_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    core = Core(tmp_path_factory.mktemp("core"))
    yield core
    core.close()


@pytest.fixture
def core(core_server: Core, container: PersistenceContainer) -> Core:
    """persistence's calls to core go to the real one."""
    container.core = CoreTasks(core_server.url, timeout=5.0)
    return core_server


class Machine:
    """Headers of a worker running one attempt: the `attempt` grant core puts in the work message
    (for a task and attempt of a brand). `for_job` finds the attempt a job was started with."""

    def __init__(self) -> None:
        self.issuer = machine_issuer(make_settings("core", "sqlite://"), CORE)
        self.jobs: dict[int, tuple[int, int]] = {}

    def __call__(
        self, brand: dict[str, Any] = DEFAULT_BRAND, task: int = 0, attempt: int = 1
    ) -> dict[str, str]:
        assert self.issuer is not None
        token = self.issuer.mint(ATTEMPT, brand["id"], "machine:worker", 600, task=task, attempt=attempt)
        return {"Authorization": f"Bearer {token}", "X-Brand-ID": str(brand["id"])}

    def for_job(self, job_id: int, brand: dict[str, Any] = DEFAULT_BRAND) -> dict[str, str]:
        task, attempt = self.jobs.get(job_id, (0, 1))
        return self(brand, task, attempt)


@pytest.fixture
def machine() -> Machine:
    return Machine()


def job_of(client: Any, auth: Any, task: dict, brand: dict[str, Any] = DEFAULT_BRAND) -> dict:
    listing = client.get(
        f"/tasks/persistent-jobs/persistent-jobs/?base_task={task['id']}", headers=auth.headers(brand=brand)
    ).json
    assert listing["count"] == 1, listing
    return listing["results"][0]


def start(
    client: Any,
    machine: Any,
    task: dict,
    attempt: int = 1,
    resume: Any = None,
    brand=DEFAULT_BRAND,
    delivery: int = 1,
) -> Any:
    body = {
        "base_task": task["id"],
        "task_id": task["task_id"],
        "task_type": task.get("task_type", "example.batch"),
        "attempt": attempt,
        "delivery": delivery,
        "resume": resume,
    }
    response = client.post(
        "/tasks/persistent-jobs/persistent-jobs/for-task/",
        json=body,
        headers=machine(brand, task["id"], attempt),
    )
    if response.status_code == 200:
        machine.jobs[response.json["job_id"]] = (task["id"], attempt)
    return response


def checkpoint(
    client: Any, machine: Any, job_id: int, step: str, data: dict, brand=DEFAULT_BRAND, **extra: Any
) -> Any:
    body = {"persistent_job": job_id, "step_name": step, "checkpoint_data": data, **extra}
    return client.post(
        "/tasks/persistent-jobs/checkpoints/", json=body, headers=machine.for_job(job_id, brand)
    )


__all__ = ["SQLITE_ONLY", "Events", "checkpoint", "job_of", "start", "task_created"]
