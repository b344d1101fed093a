"""monitoring on real RabbitMQ and PostgreSQL, talking only through the bus: core's outcome event
becomes a metrics record within a second, with nothing sent back for it; an alert rule notifies
once per cooldown by a signed webhook and an e-mail; a worker that stops its heartbeats is marked
offline and announced. Last, beside core: a worker's report reaches monitoring through core, and
core's cross filter finds the task without a metrics.recorded round trip."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from services.monitoring.app import create_app as create_monitoring
from services.monitoring.container import bootstrap as bootstrap_monitoring
from services.monitoring.models import Notification
from shared.background import start_loops
from shared.events.bus import EVENTS_EXCHANGE, OutgoingMessage
from shared.events.catalog import (
    ActiveAttempt,
    AttemptCompleted,
    AttemptMetrics,
    Event,
    TaskCompleted,
    TaskCreated,
    WorkerHeartbeat,
)
from shared.events.envelope import Envelope, iso, utcnow
from shared.events.rabbitmq_bus import RabbitMQBus
from shared.testing.fixtures import make_settings, wait_until
from shared.testing.responses import json_body

from .conftest import allow_test_receivers
from .contract import assert_matches_contract
from .receivers import smtp_server, verify_signature, webhook_receiver

pytestmark = pytest.mark.integration


class Listener:
    """A queue of its own on the bus, keeping the envelopes of the given event types."""

    def __init__(self, bus: RabbitMQBus, types: list[str]) -> None:
        self.heard: list[dict[str, Any]] = []
        self.stop = threading.Event()
        subscription = bus.subscription(
            "e2e-listener", types, lambda d: self.heard.append(json.loads(d.body))
        )
        self.thread = threading.Thread(target=subscription.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.heard if e["event_type"] == event_type]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


class Monitoring:
    """monitoring's web app and background process on the bus, and a publisher speaking as core
    and the workers do."""

    def __init__(self, client: Any, publisher: RabbitMQBus, auth: Any) -> None:
        self.client, self.publisher, self.auth = client, publisher, auth
        self.next_id = 500

    def send(self, event: Event, brand_id: int | None) -> None:
        envelope = Envelope.of(event, brand_id)
        message = OutgoingMessage(EVENTS_EXCHANGE, event.event_type, envelope.to_json(), envelope.event_id)
        self.publisher.publish([message])

    def run_task(self, execution_time_ms: float) -> tuple[dict[str, Any], float]:
        """Core's task.created and task.completed of a short task; returns (task, when sent)."""
        self.next_id += 1
        now = iso(utcnow())
        task: dict[str, Any] = {
            "id": self.next_id,
            "task_id": f"task_e2e{self.next_id}",
            "task_type": "seo.analysis",
        }
        created = TaskCreated(
            **task,
            status="pending",
            priority="normal",
            queue_name="normal",
            brand={"id": 9, "name": "Humari"},
            created_by={"id": "1", "username": "martin"},
            created_at=now,
            updated_at=now,
            context_data={},
            max_retries=3,
            timeout_minutes=30,
        )
        metrics = AttemptMetrics(execution_time_ms=execution_time_ms, memory_usage_mb=50.0, cost_usd=0.01)
        completed = TaskCompleted(
            **task,
            attempt=1,
            worker_name="e2e-worker",
            priority="normal",
            retry_count=0,
            max_retries=3,
            created_at=now,
            started_at=now,
            completed_at=iso(utcnow()),
            metrics=metrics,
            result_data={"ok": True},
        )
        self.send(created, 9)
        self.send(completed, 9)
        return task, time.monotonic()

    def get(self, path: str) -> Any:
        response = self.client.get("/tasks/monitoring/" + path, headers=self.auth.headers())
        assert response.status_code == 200, response.json
        return response.json


@pytest.fixture
def smtp() -> Iterator[tuple[int, Any]]:
    with smtp_server() as server:
        yield server


def monitoring_settings(database_url: str, amqp_url: str, bus_prefix: str, smtp_port: int) -> Any:
    return make_settings(
        "monitoring",
        database_url,
        amqp_url,
        bus_prefix,
        TASKHUB_WORKER_OFFLINE_SECONDS="1",
        TASKHUB_SMTP_HOST="127.0.0.1",
        TASKHUB_SMTP_PORT=str(smtp_port),
        TASKHUB_SMTP_FROM="alerts@taskhub.test",
    )


@pytest.fixture
def monitoring(postgres_url, amqp_url, bus_prefix, auth, smtp) -> Iterator[Monitoring]:
    container = bootstrap_monitoring(monitoring_settings(postgres_url, amqp_url, bus_prefix, smtp[0]))
    allow_test_receivers(container)
    client = create_monitoring(container=container).test_client()
    publisher = RabbitMQBus(amqp_url, prefix=bus_prefix)
    stop = threading.Event()
    threads = start_loops(container.background_loops(), stop)
    try:
        yield Monitoring(client, publisher, auth)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        for bus in (container.bus, publisher):
            bus.close()
        container.ctx.dispose()


def test_outcomes_become_records_and_alerts_over_the_bus(monitoring, smtp, amqp_url, bus_prefix):
    _, inbox = smtp
    listener_bus = RabbitMQBus(amqp_url, prefix=bus_prefix)
    listener = Listener(listener_bus, ["metrics.recorded", "alert.triggered"])
    try:
        with webhook_receiver() as hook:
            rule = monitoring.client.post(
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
                headers=monitoring.auth.headers(),
            )
            assert rule.status_code == 201, rule.json

            task, sent = monitoring.run_task(2500.0)
            record = wait_until(
                lambda: monitoring.get(f"metrics/?base_task={task['id']}")["results"],
                timeout=1.0,
                interval=0.02,
                message="the metrics record within a second of task.completed",
            )[0]
            assert time.monotonic() - sent < 1.0
            assert record["execution_time_ms"] == 2500.0 and record["base_task"]["status"] == "completed"

            # the rule notified: one signed webhook, one e-mail
            wait_until(lambda: hook.calls and inbox.messages, timeout=10, message="webhook and e-mail")
            [call] = hook.calls
            assert verify_signature("e2e-secret-value", call)
            assert json.loads(call.body)["task_ids"] == [task["task_id"]]
            [mail] = inbox.messages
            assert mail.rcpt_tos == ["ops@example.com"] and task["task_id"] in mail.content.decode()

            # a second match within the cooldown is recorded but notifies nobody
            second, _ = monitoring.run_task(3000.0)
            history = wait_until(
                lambda: monitoring.get("alerts/history/")["count"] == 2 and monitoring.get("alerts/history/"),
                timeout=5,
            )
            assert [(e["task_id"], e["notified"]) for e in history["results"]] == [
                (second["task_id"], False),
                (task["task_id"], True),
            ]
            session_factory = monitoring.client.application.extensions["monitoring"].session_factory
            with session_factory() as session:
                statuses = [n.status for n in session.scalars(select(Notification))]
            assert sorted(statuses) == ["sent", "sent"]
            assert len(hook.calls) == 1 and len(inbox.messages) == 1
            active = monitoring.get("alerts/active/")
            assert active["active_alerts"] == 1
            assert set(active["alerts"][0]["affected_tasks"]) == {task["task_id"], second["task_id"]}

            # both matches announced; the worker-reported figures are not (core has them already)
            announced = wait_until(
                lambda: len(listener.of("alert.triggered")) == 2 and listener.heard, timeout=5
            )
            for event in announced:
                assert_matches_contract(event)
            assert listener.of("metrics.recorded") == []
    finally:
        listener.close()
        listener_bus.close()


def test_a_worker_whose_heartbeats_stop_is_marked_offline_and_announced(monitoring, amqp_url, bus_prefix):
    listener_bus = RabbitMQBus(amqp_url, prefix=bus_prefix)
    listener = Listener(listener_bus, ["worker.offline"])
    try:
        running = ActiveAttempt(id=1, task_id="task_e2e0001", attempt=1, brand_id=9, task_type="x")
        monitoring.send(
            WorkerHeartbeat(
                worker_name="e2e-worker",
                queues=["normal"],
                concurrency=2,
                task_types=[],
                active_task_ids=["task_e2e0001"],
                active_tasks=[running],
                cpu_percent=12.0,
                memory_percent=30.0,
                load_average=[0.2, 0.1, 0.1],
                processed_tasks=3,
                started_at=iso(utcnow()),
            ),
            None,
        )
        online = wait_until(lambda: monitoring.get("workers/?is_online=true")["results"], timeout=5)
        assert online[0]["worker_name"] == "e2e-worker"
        # the worker stops: no more heartbeats
        [event] = wait_until(lambda: listener.heard, timeout=10, message="worker.offline on the bus")
        assert event["data"] == {"worker_name": "e2e-worker", "task_ids": ["task_e2e0001"]}
        assert_matches_contract(event)
        [worker] = monitoring.get("workers/")["results"]
        assert worker["is_online"] is False
        assert monitoring.get("workers/overview/")["system_health"]["overall_status"] == "unavailable"
    finally:
        listener.close()
        listener_bus.close()


def test_core_shows_the_metrics_of_a_workers_report_without_a_round_trip(
    postgres_databases, amqp_url, bus_prefix, auth, smtp
):
    """A worker reports an attempt to core only; core's task.completed brings the figures to
    monitoring, and core's own cross filter has them from the report (needs core of issue 12)."""
    from services.core.app import create_app as create_core
    from services.core.container import bootstrap as bootstrap_core
    from services.core.models import Task

    core = bootstrap_core(make_settings("core", postgres_databases(), amqp_url, bus_prefix))
    monitoring = bootstrap_monitoring(
        monitoring_settings(postgres_databases(), amqp_url, bus_prefix, smtp[0])
    )
    core_client = create_core(container=core).test_client()
    monitoring_client = create_monitoring(container=monitoring).test_client()
    worker_bus = RabbitMQBus(amqp_url, prefix=bus_prefix)
    stop = threading.Event()
    threads = start_loops(core.background_loops() + monitoring.background_loops(), stop)
    try:

        def send(event: Event) -> None:
            envelope = Envelope.of(event, 9 if not isinstance(event, WorkerHeartbeat) else None)
            message = OutgoingMessage(
                EVENTS_EXCHANGE, event.event_type, envelope.to_json(), envelope.event_id
            )
            worker_bus.publish([message])

        # a worker serving the type is alive: core dispatches the task to it
        seo = {"name": "seo.analysis", "queue": "normal", "priority": "normal", "timeout_minutes": 30}
        send(
            WorkerHeartbeat(
                worker_name="e2e-worker",
                queues=["normal"],
                concurrency=1,
                task_types=[{**seo, "max_retries": 3, "persistent": False}],
                active_task_ids=[],
                active_tasks=[],
            )
        )
        wait_until(
            lambda: json_body(core_client.get("/tasks/types/", headers=auth.headers()))["count"],
            timeout=10,
            message="core hears the worker",
        )
        task = json_body(
            core_client.post("/tasks/", json={"task_type": "seo.analysis"}, headers=auth.headers())
        )

        def dispatched() -> bool:
            with core.session_factory() as session:
                row = session.get(Task, task["id"])
                return row is not None and row.attempt == 1

        wait_until(dispatched, timeout=10, message="core dispatched attempt 1")
        now = iso(utcnow())
        send(
            AttemptCompleted(
                id=task["id"],
                task_id=task["task_id"],
                attempt=1,
                worker_name="e2e-worker",
                started_at=now,
                finished_at=now,
                result_data={"ok": True},
                metrics=AttemptMetrics(execution_time_ms=2500.0, memory_usage_mb=50.0, cost_usd=0.01),
            )
        )

        def recorded() -> list[dict]:
            query = f"/tasks/monitoring/metrics/?base_task={task['id']}"
            return json_body(monitoring_client.get(query, headers=auth.headers()))["results"]

        [record] = wait_until(recorded, timeout=10, message="monitoring's record, through core")
        assert record["execution_time_ms"] == 2500.0

        def crossed() -> list[dict]:
            query = "/tasks/?has_metrics=true&execution_time__gte=2000"
            return json_body(core_client.get(query, headers=auth.headers()))["results"]

        [seen] = wait_until(crossed, timeout=5, message="core's has_metrics / execution_time__gte")
        assert seen["id"] == task["id"] and seen["metrics"]["execution_time_ms"] == 2500.0
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        for bus in (core.bus, monitoring.bus, worker_bus):
            bus.close()
        core.ctx.dispose()
        monitoring.ctx.dispose()
