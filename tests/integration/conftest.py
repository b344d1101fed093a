"""The `make up` topology for the integration tests: brought up once per session on a free
gateway port, free service ports, its own PostgreSQL databases and its own broker prefix, then
taken down (and its databases and queues removed) at the end.

Every event the topology publishes is also copied into a durable queue bound to `#`
(`<prefix>contract-collector`), declared before anything starts, so the contract test can check
all of them, including those published while RabbitMQ restarted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from deploy.local.topology import has_scheduler, has_worker
from shared.config import REPO_ROOT
from shared.db import normalize_url
from shared.routes import SERVICES
from shared.testing.broker_cleanup import rabbitmqctl
from shared.testing.fixtures import DEFAULT_BRAND, JWT_SECRET, Auth, require_service

# The rate limit of the test gateway: low enough that a burst trips it in a fraction of a
# second, high enough that the tests' own polling (every 0.2 s) never does.
TEST_RATE = "20r/s"
TEST_BURST = 20


def restarts_shared(what: str, opt_in: str, order: int) -> list[pytest.MarkDecorator]:
    """The marks of a test that stops a shared server (`what`): every other engineer's tests on
    this machine would fail meanwhile, so it runs in CI only, or when `opt_in`=1, and last."""
    return [
        pytest.mark.integration,
        pytest.mark.run_last(order),
        pytest.mark.timeout(300),
        pytest.mark.skipif(
            os.environ.get("CI") != "true" and os.environ.get(opt_in) != "1",
            reason=f"{what}: CI only, or {opt_in}=1",
        ),
    ]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`@pytest.mark.run_last(n)` tests run after all others, in increasing n (stable otherwise)."""

    def rank(item: pytest.Item) -> int:
        marker = item.get_closest_marker("run_last")
        return marker.args[0] if marker else 0

    items.sort(key=rank)


@dataclass
class Topology:
    run_dir: Path
    env: dict[str, str]
    prefix: str
    gateway: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)  # drained from the collector queue
    session: requests.Session = field(default_factory=requests.Session)
    auth: Auth = field(default_factory=Auth)

    # ---- the processes

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "deploy.local.topology", "--run-dir", str(self.run_dir), *args]
        return subprocess.run(
            command, env=self.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
        )

    def stop(self, name: str) -> None:
        result = self.cli("stop", name)
        assert result.returncode == 0, result.stderr

    def start(self, name: str) -> None:
        result = self.cli("start", name)
        assert result.returncode == 0, result.stderr + result.stdout

    def has(self, service: str) -> bool:
        return service in self.state.get("ports", {})

    @property
    def has_worker(self) -> bool:
        return any(p["kind"] == "worker" for p in self.state.get("processes", []))

    @property
    def has_scheduler(self) -> bool:
        return any(p["kind"] == "scheduler" for p in self.state.get("processes", []))

    # ---- HTTP through the gateway

    def headers(self, **extra: str) -> dict[str, str]:
        return self.auth.headers("admin", DEFAULT_BRAND, **extra)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", self.headers())
        return self.session.get(self.gateway + path, timeout=10, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", self.headers())
        return self.session.post(self.gateway + path, json=body, timeout=10, **kwargs)

    # ---- events

    def amqp_channel(self) -> tuple[pika.BlockingConnection, Any]:
        connection = pika.BlockingConnection(pika.URLParameters(self.env["AMQP_URL"]))
        return connection, connection.channel()

    @property
    def collector(self) -> str:
        return self.prefix + "contract-collector"

    def drain_events(self) -> list[dict[str, Any]]:
        """Move what the collector queue holds into `events`; returns everything collected so far."""
        connection, channel = self.amqp_channel()
        try:
            while True:
                method, properties, body = channel.basic_get(self.collector, auto_ack=True)
                if method is None:
                    break
                headers = dict(properties.headers or {})
                self.events.append(
                    {"routing_key": method.routing_key, "body": json.loads(body), "headers": headers}
                )
        finally:
            connection.close()
        return self.events

    def events_of(self, event_type: str) -> list[dict[str, Any]]:
        return [e["body"] for e in self.drain_events() if e["routing_key"] == event_type]


def _declare_collector(topology: Topology) -> None:
    connection, channel = topology.amqp_channel()
    try:
        # Same arguments as the bus declares the exchange with, so both declarations agree.
        channel.exchange_declare(topology.prefix + "events", "topic", durable=True)
        channel.queue_declare(topology.collector, durable=True)
        channel.queue_bind(topology.collector, topology.prefix + "events", routing_key="#")
    finally:
        connection.close()


def _remove_broker_objects(topology: Topology) -> None:
    """Queues and exchanges of this run's prefix (the bus declares them durable)."""
    listing = subprocess.run(
        rabbitmqctl("list_queues", "-q", "--no-table-headers", "name"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    queues = [q for q in listing.stdout.split() if q.startswith(topology.prefix)]
    connection, channel = topology.amqp_channel()
    try:
        for queue in queues:
            channel.queue_delete(queue)
        for exchange in ("events", "work", "dead"):
            channel.exchange_delete(topology.prefix + exchange)
    finally:
        connection.close()


def _drop_databases(admin_url: str, names: list[str]) -> None:
    admin = create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    admin_url = require_service("TEST_DATABASE_ADMIN_URL")
    amqp_url = require_service("TEST_AMQP_URL")
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        message = "nginx is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "TASKHUB_UP_POSTGRES_URL": admin_url,
        "TASKHUB_UP_DB_PREFIX": f"taskhub_it{tag}_",
        "AMQP_URL": amqp_url,
        "AMQP_PREFIX": f"it{tag}.",
        "JWT_SECRET": JWT_SECRET,
        "GATEWAY_RATE_LIMIT": TEST_RATE,
        "GATEWAY_RATE_BURST": str(TEST_BURST),
        "WEB_CONCURRENCY": "1",
        "TASKHUB_UP_WORKERS": "1",
    }
    for name in ("CORE", "MONITORING", "PERSISTENCE", "SCHEDULING"):
        env.pop(f"{name}_DATABASE_URL", None)  # the topology's own databases, never a developer's
    topology = Topology(tmp_path_factory.mktemp("topology"), env, f"it{tag}.")
    _declare_collector(topology)
    try:
        result = topology.cli("up", "--gateway-port", "0", "--free-ports")
        if result.returncode != 0:
            pytest.fail(f"make up failed:\n{result.stdout}\n{result.stderr}")
        topology.state = json.loads((topology.run_dir / "topology.json").read_text())
        topology.gateway = f"http://127.0.0.1:{topology.state['gateway_port']}"
        assert has_worker() == topology.has_worker and has_scheduler() == topology.has_scheduler
        yield topology
    finally:
        topology.cli("down")
        _drop_databases(admin_url, [f"{env['TASKHUB_UP_DB_PREFIX']}{service}" for service in SERVICES])
        _remove_broker_objects(topology)
