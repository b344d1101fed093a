"""End-to-end fixtures: a real core (PostgreSQL, RabbitMQ, its background loops on threads, its API
through the Flask test client) and real worker processes (`python -m services.worker`) on the
test's own broker prefix. Tests assert what a user sees through core's API and the bus, and every
event seen on the bus is checked against the event contract (docs/events/)."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.core.app import create_app
from services.core.container import bootstrap
from shared.background import start_loops
from shared.events.bus import EVENTS_EXCHANGE
from shared.events.envelope import Envelope
from shared.events.rabbitmq_bus import RabbitMQBus
from shared.testing.broker_cleanup import delete_prefixed
from shared.testing.event_contract import problems
from shared.testing.fixtures import (
    Auth,
    fresh_postgres_database,
    make_settings,
    require_service,
    wait_until,
)
from shared.testing.responses import json_body
from shared.testing.worker_process import kill_worker_processes, start_worker_process

LEASE_SECONDS = "2"
MAX_LOST_DELIVERIES = "2"


class Platform:
    """core in this process, workers as child processes, a spy on the events exchange that checks
    every event against the contract (the workers publish from their own processes)."""

    def __init__(self, database_url: str, amqp_url: str, prefix: str, auth: Any, logs: Path) -> None:
        self.amqp_url, self.prefix, self.auth, self.logs = amqp_url, prefix, auth, logs
        settings = make_settings(
            "core",
            database_url,
            amqp_url,
            prefix,
            TASKHUB_LEASE_SECONDS=LEASE_SECONDS,
            TASKHUB_MAX_LOST_DELIVERIES=MAX_LOST_DELIVERIES,
        )
        self.core = bootstrap(settings)
        self.client = create_app(container=self.core).test_client()
        self.stop = threading.Event()
        self.events: list[Envelope] = []
        self.off_contract: list[str] = []
        self.spy_bus = RabbitMQBus(amqp_url, prefix=prefix)
        spy = self.spy_bus.subscription("test-spy", ["#"], self._record)
        self.threads = start_loops(self.core.background_loops(), self.stop)
        self.threads.append(threading.Thread(target=spy.run, args=(self.stop,), daemon=True))
        self.threads[-1].start()
        self.workers: list[subprocess.Popen[bytes]] = []

    def _record(self, delivery: Any) -> None:
        self.off_contract += problems(EVENTS_EXCHANGE, delivery.routing_key, delivery.body, delivery.headers)
        self.events.append(Envelope.from_json(delivery.body))

    # ---- workers

    def start_worker(
        self, name: str, concurrency: int = 4, queues: str = "critical,high,normal", **env: str
    ) -> subprocess.Popen[bytes]:
        process = start_worker_process(
            name,
            self.amqp_url,
            self.prefix,
            self.logs / f"worker-{name}.log",
            ["--queues", queues, "--concurrency", str(concurrency)],
            TASKHUB_IDLE_HEARTBEAT_SECONDS="0.5",
            TASKHUB_TIMEOUT_SCALE="0.02",  # a timeout minute lasts 1.2 s
            TASKHUB_CANCEL_GRACE_SECONDS="2",
            TASKHUB_HANDLER_MODULES="services.worker.tests.handlers",
            **env,
        )
        self.workers.append(process)
        return process

    def heartbeats(self, worker: str) -> list[dict[str, Any]]:
        return [
            e.data
            for e in list(self.events)
            if e.event_type == "worker.heartbeat" and e.data.get("worker_name") == worker
        ]

    def wait_for_worker(self, name: str, timeout: float = 20.0) -> None:
        wait_until(lambda: self.heartbeats(name), timeout, message=f"worker {name} heartbeats")

    # ---- core's API

    def create(self, task_type: str, **fields: Any) -> dict[str, Any]:
        response = self.client.post(
            "/tasks/", json={"task_type": task_type, **fields}, headers=self.auth.headers()
        )
        assert response.status_code == 201, response.json
        return json_body(response)

    def get(self, task: dict[str, Any]) -> dict[str, Any]:
        response = self.client.get(f"/tasks/{task['id']}/", headers=self.auth.headers())
        assert response.status_code == 200, response.json
        return json_body(response)

    def wait_status(self, task: dict[str, Any], *statuses: str, timeout: float = 20.0) -> dict[str, Any]:
        return wait_until(
            lambda: (lambda t: t if t["status"] in statuses else None)(self.get(task)),
            timeout,
            message=f"{task['task_id']} to become {statuses}",
        )

    def history(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        return list(reversed(self.get(task)["status_history"]))

    def events_of(self, event_type: str, task: dict[str, Any]) -> list[Envelope]:
        return [e for e in list(self.events) if e.event_type == event_type and e.data.get("id") == task["id"]]

    def wait_events(self, event_type: str, task: dict[str, Any], count: int = 1) -> list[Envelope]:
        """The task's events of a type once `count` have arrived (an event leaves core's outbox
        just after the commit the API already shows)."""
        return wait_until(
            lambda: (lambda found: found if len(found) >= count else None)(self.events_of(event_type, task)),
            message=f"{count} {event_type} of {task['task_id']}",
        )

    def close(self) -> None:
        kill_worker_processes(self.workers)
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        self.spy_bus.close()
        self.core.ctx.dispose()
        off_contract = sorted(set(self.off_contract))
        assert not off_contract, "events on the bus off the contract (docs/events/):\n" + "\n".join(
            off_contract[:30]
        )


@pytest.fixture
def platform(
    postgres_url: str, amqp_url: str, bus_prefix: str, auth: Any, tmp_path: Path
) -> Iterator[Platform]:
    built = Platform(postgres_url, amqp_url, bus_prefix, auth, tmp_path)
    yield built
    built.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One core and one worker (`w-main`, 4 slots) shared by a module's tests, for the tests
    that only need a working platform (each creates and checks its own tasks)."""
    amqp = require_service("TEST_AMQP_URL")
    prefix = f"t{uuid.uuid4().hex[:8]}."
    with fresh_postgres_database() as database_url:
        built = Platform(database_url, amqp, prefix, Auth(), tmp_path_factory.mktemp("served"))
        try:
            built.start_worker("w-main")
            built.wait_for_worker("w-main")
            yield built
        finally:
            built.close()
            delete_prefixed([prefix])  # its quorum queues hold broker file descriptors
