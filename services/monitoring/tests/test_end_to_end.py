"""monitoring beside core on real RabbitMQ and PostgreSQL, each with its own database, talking only
through the bus: a worker's report becomes a metrics record within a second and core's cross
filter sees it; an alert rule notifies once per cooldown by a signed webhook and an e-mail; a
worker that stops its heartbeats is marked offline and announced."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from sqlalchemy import select

from services.core.app import create_app as create_core
from services.core.container import bootstrap as bootstrap_core
from services.monitoring.app import create_app as create_monitoring
from services.monitoring.container import bootstrap as bootstrap_monitoring
from services.monitoring.models import Notification
from shared.background import start_loops
from shared.events.bus import EVENTS_EXCHANGE, OutgoingMessage
from shared.events.envelope import Envelope, iso, utcnow
from shared.events.rabbitmq_bus import RabbitMQBus
from shared.testing.fixtures import make_settings, wait_until

from .conftest import allow_test_receivers
from .contract import assert_matches_contract
from .receivers import smtp_server, verify_signature, webhook_receiver

pytestmark = pytest.mark.integration


class Platform:
    def __init__(self, core: Any, monitoring: Any, worker_bus: RabbitMQBus, auth: Any) -> None:
        self.core, self.monitoring, self.worker_bus, self.auth = core, monitoring, worker_bus, auth

    def report(self, event_type: str, brand_id: int | None, **data: Any) -> None:
        """Publish on the bus as a worker does."""
        envelope = Envelope(event_type=event_type, producer="worker", brand_id=brand_id, data=data)
        self.worker_bus.publish(
            [OutgoingMessage(EVENTS_EXCHANGE, event_type, envelope.to_json(), envelope.event_id)]
        )

    def run_task(self, execution_time_ms: float) -> tuple[dict, float]:
        """Create a task in core, report it started and completed; returns (task, when completed)."""
        task = self.core.post("/tasks/", json={"task_type": "seo.analysis"}, headers=self.auth.headers()).json
        ids = {"id": task["id"], "task_id": task["task_id"], "attempt": 1, "worker_name": "e2e-worker"}
        self.report("task.started", 9, **ids, started_at=iso(utcnow()))
        metrics = {"execution_time_ms": execution_time_ms, "memory_usage_mb": 50.0, "cost_usd": 0.01}
        self.report("task.completed", 9, **ids, result_data={"ok": True}, metrics=metrics)
        return task, time.monotonic()

    def monitoring_get(self, path: str) -> Any:
        response = self.monitoring.get("/tasks/monitoring/" + path, headers=self.auth.headers())
        assert response.status_code == 200, response.json
        return response.json


def _delete_queues(url: str, buses: list[RabbitMQBus]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for queue in sorted({q for bus in buses for q in bus.declared_queues()}):
            channel.queue_delete(queue)
    finally:
        connection.close()


@pytest.fixture
def smtp() -> Iterator[tuple[int, Any]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def platform(postgres_databases, amqp_url, bus_prefix, auth, smtp) -> Iterator[Platform]:
    core = bootstrap_core(make_settings("core", postgres_databases(), amqp_url, bus_prefix))
    monitoring = bootstrap_monitoring(
        make_settings(
            "monitoring",
            postgres_databases(),
            amqp_url,
            bus_prefix,
            TASKHUB_WORKER_OFFLINE_SECONDS="1",
            TASKHUB_SMTP_HOST="127.0.0.1",
            TASKHUB_SMTP_PORT=str(smtp[0]),
            TASKHUB_SMTP_FROM="alerts@taskhub.test",
            TASKHUB_NOTIFIER_POLL_SECONDS="0.1",
        )
    )
    allow_test_receivers(monitoring)
    worker_bus = RabbitMQBus(amqp_url, prefix=bus_prefix)
    core_client = create_core(container=core).test_client()
    monitoring_client = create_monitoring(container=monitoring).test_client()
    stop = threading.Event()
    threads = start_loops(core.background_loops() + monitoring.background_loops(), stop)
    try:
        yield Platform(core_client, monitoring_client, worker_bus, auth)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        _delete_queues(amqp_url, [core.bus, monitoring.bus, worker_bus])  # type: ignore[list-item]
        for bus in (core.bus, monitoring.bus, worker_bus):
            bus.close()
        core.ctx.dispose()
        monitoring.ctx.dispose()


def test_metrics_alerts_and_cross_filters_over_the_bus(platform, smtp):
    _, inbox = smtp
    with webhook_receiver() as hook:
        rule = platform.monitoring.post(
            "/tasks/monitoring/alerts/",
            json={
                "name": "slow analyses",
                "metric_field": "execution_time_ms",
                "condition": "gt",
                "threshold_value": 1000,
                "cooldown_minutes": 60,
                "webhook_url": hook.url,
                "webhook_secret": "e2e-secret-value",
                "notification_emails": ["ops@example.com"],
            },
            headers=platform.auth.headers(),
        )
        assert rule.status_code == 201, rule.json

        task, finished = platform.run_task(2500.0)
        record = wait_until(
            lambda: platform.monitoring_get(f"metrics/?base_task={task['id']}")["results"],
            timeout=1.0,
            interval=0.02,
            message="the metrics record within a second of task.completed",
        )[0]
        assert time.monotonic() - finished < 1.0
        assert record["execution_time_ms"] == 2500.0 and record["base_task"]["task_id"] == task["task_id"]

        # core hears metrics.recorded: its cross filter finds the task, its summary shows the figures
        def crossed() -> list[dict]:
            query = "/tasks/?has_metrics=true&execution_time__gte=2000"
            return platform.core.get(query, headers=platform.auth.headers()).json["results"]

        [seen] = wait_until(crossed, timeout=5, message="core's has_metrics / execution_time__gte")
        assert seen["id"] == task["id"] and seen["metrics"]["execution_time_ms"] == 2500.0
        assert (
            platform.core.get(
                "/tasks/?has_metrics=true&execution_time__gte=3000", headers=platform.auth.headers()
            ).json["count"]
            == 0
        )

        # the rule notified: one signed webhook, one e-mail
        wait_until(lambda: hook.calls and inbox.messages, timeout=10, message="webhook and e-mail")
        [call] = hook.calls
        assert verify_signature("e2e-secret-value", call)
        assert json.loads(call.body)["task_ids"] == [task["task_id"]]
        [mail] = inbox.messages
        assert mail.rcpt_tos == ["ops@example.com"] and task["task_id"] in mail.content.decode()

        # a second match within the cooldown is recorded but notifies nobody
        second, _ = platform.run_task(3000.0)
        history = wait_until(
            lambda: (
                platform.monitoring_get("alerts/history/")["count"] == 2
                and platform.monitoring_get("alerts/history/")
            ),
            timeout=5,
        )
        assert [(e["task_id"], e["notified"]) for e in history["results"]] == [
            (second["task_id"], False),
            (task["task_id"], True),
        ]
        with platform.monitoring.application.extensions["monitoring"].session_factory() as session:
            statuses = [n.status for n in session.scalars(select(Notification))]
        assert sorted(statuses) == ["sent", "sent"]
        assert len(hook.calls) == 1 and len(inbox.messages) == 1
        active = platform.monitoring_get("alerts/active/")
        assert active["active_alerts"] == 1 and set(active["alerts"][0]["affected_tasks"]) == {
            task["task_id"],
            second["task_id"],
        }


def test_a_worker_whose_heartbeats_stop_is_marked_offline_and_announced(platform, amqp_url, bus_prefix):
    heard: list[dict] = []
    listener_bus = RabbitMQBus(amqp_url, prefix=bus_prefix)
    listener = listener_bus.subscription(
        "e2e-offline-listener", ["worker.offline"], lambda d: heard.append(json.loads(d.body))
    )
    stop = threading.Event()
    thread = threading.Thread(target=listener.run, args=(stop,), daemon=True)
    thread.start()
    try:
        running = [
            {"id": 1, "task_id": "task_e2e0001", "brand_id": 9, "task_type": "x", "started_at": iso(utcnow())}
        ]

        def beat() -> None:
            platform.report(
                "worker.heartbeat",
                None,
                worker_name="e2e-worker",
                queues=["normal"],
                active_task_ids=["task_e2e0001"],
                active_tasks=running,
                cpu_percent=12.0,
                memory_percent=30.0,
                load_average=0.2,
                processed_tasks=3,
                failed_tasks=0,
                started_at=iso(utcnow()),
            )

        beat()
        online = wait_until(lambda: platform.monitoring_get("workers/?is_online=true")["results"], timeout=5)
        assert online[0]["worker_name"] == "e2e-worker"
        # the worker stops: no more heartbeats
        [event] = wait_until(lambda: heard, timeout=10, message="worker.offline on the bus")
        assert event["data"] == {"worker_name": "e2e-worker", "task_ids": ["task_e2e0001"]}
        assert_matches_contract(event)
        [worker] = platform.monitoring_get("workers/")["results"]
        assert worker["is_online"] is False
        assert (
            platform.monitoring_get("workers/overview/")["system_health"]["overall_status"] == "unavailable"
        )
    finally:
        stop.set()
        thread.join(5)
        _delete_queues(amqp_url, [listener_bus])
        listener_bus.close()
