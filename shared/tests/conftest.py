"""Fixtures for the bus contract: one `bus` per adapter, and a runner for subscription loops."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import amqp
import pytest

from shared.events.amqp_link import BrokerAddress, connect
from shared.events.bus import PRIORITIES, EventBus, Subscription
from shared.events.inprocess_bus import InProcessBus
from shared.events.rabbitmq_bus import DEAD_EXCHANGE, RabbitMQBus

# `amqp_url` (the test broker; skipped locally without one, a failure in CI) is
# shared.testing.fixtures's, as for every suite.


def _delete_topology(url: str, bus: RabbitMQBus) -> None:
    queues = bus.declared_queues()
    for priority in PRIORITIES:
        queues.update({bus.work_queue_name(priority), bus.work_queue_name(priority) + ".dead"})
    exchanges = [bus.prefix + name for name in ("events", "work", DEAD_EXCHANGE)]
    exchanges += [queue + ".filter" for queue in queues]
    connection: amqp.Connection = connect(BrokerAddress.from_url(url), "tests cleanup", 0)
    try:
        channel = connection.channel()
        for queue in sorted(queues):
            channel.queue_delete(queue)  # deleting a missing queue is a no-op
        for exchange in exchanges:
            channel.exchange_delete(exchange)
    finally:
        connection.close()


@pytest.fixture
def rabbitmq_bus(amqp_url: str) -> Iterator[RabbitMQBus]:
    bus = RabbitMQBus(amqp_url, prefix=f"t{uuid.uuid4().hex[:8]}.")
    yield bus
    bus.close()
    _delete_topology(amqp_url, bus)


@pytest.fixture(params=["inprocess", "rabbitmq"])
def bus(request: pytest.FixtureRequest) -> Iterator[EventBus]:
    if request.param == "inprocess":
        in_process = InProcessBus(prefix=f"t{uuid.uuid4().hex[:8]}.")
        yield in_process
        in_process.close()
    else:
        yield request.getfixturevalue("rabbitmq_bus")


class Runner:
    """Runs subscriptions in threads the way a service does, and stops them all at teardown."""

    def __init__(self) -> None:
        self._running: list[tuple[threading.Event, threading.Thread]] = []

    def start(self, subscription: Subscription) -> Callable[[float], bool]:
        """Start `subscription.run`; returns stop(timeout) -> True if run() returned in time."""
        stop = threading.Event()
        thread = threading.Thread(target=subscription.run, args=(stop,), daemon=True)
        thread.start()
        self._running.append((stop, thread))

        def stop_and_join(timeout: float = 5.0) -> bool:
            stop.set()
            thread.join(timeout)
            return not thread.is_alive()

        return stop_and_join

    def stop_all(self) -> None:
        for stop, _ in self._running:
            stop.set()
        for _, thread in self._running:
            thread.join(5)


@pytest.fixture
def runner() -> Iterator[Runner]:
    # Depends on nothing, but tests request it after `bus`, so it is torn down first: every loop
    # stops before its queues are deleted.
    running = Runner()
    yield running
    running.stop_all()
