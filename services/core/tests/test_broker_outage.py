"""RabbitMQ stopped and started again during a stream of writes: every event arrives (counted).

This test stops the machine's RabbitMQ for a few seconds (`rabbitmqctl stop_app`), so it is
marked `broker_outage` and runs last (see the root conftest)."""

from __future__ import annotations

import subprocess
import threading

import pytest

from services.core.app import create_app
from services.core.container import bootstrap
from shared.background import start_loops
from shared.events.envelope import Envelope
from shared.events.rabbitmq_bus import RabbitMQBus
from shared.prometheus_metrics import PUBLISH_FAILURES
from shared.testing.broker_cleanup import rabbitmqctl
from shared.testing.fixtures import make_settings, wait_until
from shared.testing.responses import json_body

WRITES = 150


@pytest.mark.broker_outage
@pytest.mark.timeout(180)
def test_no_event_is_lost_while_rabbitmq_restarts(postgres_url, amqp_url, bus_prefix, auth):
    settings = make_settings("core", postgres_url, amqp_url, bus_prefix)
    container = bootstrap(settings)
    client = create_app(container=container).test_client()
    stop = threading.Event()
    received: set[str] = set()
    listener_bus = RabbitMQBus(amqp_url, prefix=bus_prefix)

    def count(delivery):
        envelope = Envelope.from_json(delivery.body)
        received.add(envelope.data["task_id"])

    listener = listener_bus.subscription("outage-listener", ["task.created"], count)
    relay = [loop for loop in container.background_loops() if loop.name == "core.relay"]
    threads = start_loops(relay, stop) + [threading.Thread(target=listener.run, args=(stop,), daemon=True)]
    threads[-1].start()
    created: list[str] = []
    failures_before = PUBLISH_FAILURES.labels("core")._value.get()
    try:
        for i in range(WRITES):
            if i == WRITES // 3:
                subprocess.run(rabbitmqctl("stop_app"), check=True, capture_output=True, timeout=60)
            if i == 2 * WRITES // 3:
                subprocess.run(rabbitmqctl("start_app"), check=True, capture_output=True, timeout=60)
            response = client.post("/tasks/", json={"task_type": "example.noop"}, headers=auth.headers())
            assert response.status_code == 201  # the outbox absorbs writes while the broker is down
            created.append(json_body(response)["task_id"])
        wait_until(lambda: received >= set(created), timeout=90, message=f"{len(received)}/{WRITES} events")
        assert received == set(created)
        # the relay really met a dead broker (and retried) rather than publishing before the stop
        assert PUBLISH_FAILURES.labels("core")._value.get() > failures_before
    finally:
        subprocess.run(rabbitmqctl("start_app"), capture_output=True, timeout=60)
        stop.set()
        for thread in threads:
            thread.join(5)
        container.ctx.dispose()
