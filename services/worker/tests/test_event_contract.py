"""Every message of tasks' lives, as core and a real worker process exchange them on RabbitMQ, matches
the event contract generated from shared/events/catalog.py: the events (the attempt reports the
worker sends from its own process included) and the work orders."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pika
import pytest

from shared.events.bus import PRIORITIES, WORK_EXCHANGE
from shared.testing.event_contract import problems
from shared.testing.fixtures import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

# what the tasks below make core and the worker send, at the least
EXPECTED = {
    "task.created",
    "task.started",
    "task.progress",
    "task.completed",
    "task.failed",
    "task.retried",
    "task.cancelled",
    "task.deleted",
    "attempt.started",
    "attempt.progress",
    "attempt.completed",
    "attempt.failed",
    "worker.heartbeat",
}


class WorkSpy:
    """A private queue that gets a copy of every work order core sends."""

    def __init__(self, amqp_url: str, prefix: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        self.channel = self.connection.channel()
        exchange = prefix + WORK_EXCHANGE
        self.channel.exchange_declare(exchange, "direct", durable=True)  # as the bus declares it
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        for priority in PRIORITIES:
            self.channel.queue_bind(self.queue, exchange, routing_key=priority)

    def drain(self) -> list[tuple[str, bytes, dict[str, Any]]]:
        orders: list[tuple[str, bytes, dict[str, Any]]] = []
        while True:
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return orders
            orders.append((method.routing_key, body, dict(properties.headers or {})))

    def close(self) -> None:
        self.connection.close()


def test_every_message_of_a_tasks_life_matches_the_contract(platform):
    work = WorkSpy(platform.amqp_url, platform.prefix)
    try:
        platform.start_worker("w-contract")
        platform.wait_for_worker("w-contract")
        short = platform.create("example.noop")  # reported once, with its outcome
        long = platform.create("example.sleep", context_data={"seconds": 1.6, "steps": 4})  # past the hold
        flaky = platform.create("example.flaky", context_data={"fail_times": 1}, max_retries=1)
        doomed = platform.create("example.sleep", context_data={"seconds": 30})
        platform.wait_status(doomed, "running")
        cancel = platform.client.post(f"/tasks/{doomed['id']}/cancel/", headers=platform.auth.headers())
        assert cancel.status_code == 200, cancel.json
        for task in (short, long, flaky):
            assert platform.wait_status(task, "completed", "failed", timeout=30)["status"] == "completed"
        platform.wait_status(doomed, "cancelled")
        deleted = platform.client.delete(f"/tasks/{short['id']}/", headers=platform.auth.headers())
        assert deleted.status_code == 204, deleted.json
        seen = wait_until(
            lambda: (lambda kinds: kinds if set(kinds) >= EXPECTED else None)(
                Counter(e.event_type for e in list(platform.events))
            ),
            20,
            message=f"every kind of event on the bus: {EXPECTED}",
        )
        orders = work.drain()
    finally:
        work.close()
    # the spy checked every event it saw (platform.off_contract); the work orders are checked here
    assert not platform.off_contract, sorted(set(platform.off_contract))
    assert len(orders) >= 5, orders  # one per attempt: the retry and the cancelled one included
    assert [p for key, body, headers in orders for p in problems(WORK_EXCHANGE, key, body, headers)] == []
    assert sum(seen.values()) >= 20, seen
