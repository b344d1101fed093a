"""The contract of the bus port (shared/events/bus.py) that every adapter must keep.

Each test runs against the in-process bus and against RabbitMQ (a random prefix per test, its
queues and exchanges deleted afterwards). Nothing sleeps and hopes: tests wait for a condition
with a deadline, and prove an absence by waiting for a sentinel published after it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from shared.events.bus import (
    EVENTS_EXCHANGE,
    WORK_EXCHANGE,
    Delivery,
    EventBus,
    OutgoingMessage,
)
from shared.events.rabbitmq_bus import RabbitMQBus

from .conftest import Runner

pytestmark = pytest.mark.timeout(60)

DEADLINE = 15.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def event(event_type: str, **data: object) -> OutgoingMessage:
    message_id = str(uuid.uuid4())
    body = json.dumps({"event_id": message_id, "event_type": event_type, "data": data}).encode()
    return OutgoingMessage(EVENTS_EXCHANGE, event_type, body, message_id, {"producer": "tests"})


def work(priority: str, task_id: int) -> OutgoingMessage:
    body = json.dumps({"task_id": task_id}).encode()
    return OutgoingMessage(WORK_EXCHANGE, priority, body, str(uuid.uuid4()), {"task": str(task_id)})


class Recorder:
    """A handler that records deliveries and fails for the message ids it is told to."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self.failing = failing or set()
        self._lock = threading.Lock()

    def __call__(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)
        if delivery.message_id in self.failing:
            raise RuntimeError("poison")

    def of(self, message: OutgoingMessage) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.message_id == message.message_id]

    def keys(self) -> list[str]:
        with self._lock:
            return [d.routing_key for d in self.deliveries]


def consumers_of(bus: EventBus, queue: str) -> int | None:
    figures = bus.queue_figures(queue)
    return None if figures is None else figures.consumers


# ---- events


def test_topic_pattern_selects_event_types(bus: EventBus, runner: Runner) -> None:
    recorder = Recorder()
    runner.start(bus.subscription("tasks", ["task.*"], recorder))
    created, saved, sentinel = (
        event("task.created"),
        event("checkpoint.saved"),
        event("task.updated"),
    )
    bus.publish([created, saved, sentinel])

    wait_until(lambda: recorder.of(sentinel), "the sentinel event")
    assert recorder.keys() == ["task.created", "task.updated"]
    delivery = recorder.of(created)[0]
    assert delivery.body == created.body
    assert delivery.headers == {"producer": "tests"}
    assert (delivery.delivery_count, delivery.redelivered) == (1, False)


def test_every_subscribed_queue_gets_a_broadcast(bus: EventBus, runner: Runner) -> None:
    first, second = Recorder(), Recorder()
    runner.start(bus.subscription("first", ["task.#"], first))
    runner.start(bus.subscription("second", ["task.completed"], second))
    message = event("task.completed", task_id=1)
    bus.publish([message])

    wait_until(lambda: first.of(message) and second.of(message), "both queues to get it")


def test_failing_handler_is_redelivered_then_parked(bus: EventBus, runner: Runner) -> None:
    poison, sentinel = event("task.created", n=1), event("task.created", n=2)
    recorder = Recorder(failing={poison.message_id})
    runner.start(bus.subscription("poison", ["task.*"], recorder, max_deliveries=3))
    bus.publish([poison])

    wait_until(lambda: bus.dead_letters(bus.prefix + "poison") == 1, "the poison to be parked")
    bus.publish([sentinel])
    wait_until(lambda: recorder.of(sentinel), "the sentinel after the poison was parked")
    attempts = recorder.of(poison)
    assert [d.delivery_count for d in attempts] == [1, 2, 3]
    assert [d.redelivered for d in attempts] == [False, True, True]
    assert bus.dead_letters(bus.prefix + "poison") == 1


def test_acknowledged_message_is_not_redelivered(bus: EventBus, runner: Runner) -> None:
    recorder = Recorder()
    stop = runner.start(bus.subscription("acked", ["task.*"], recorder))
    message, sentinel = event("task.started"), event("task.progress")
    bus.publish([message])
    wait_until(lambda: recorder.of(message), "the message")
    bus.publish([sentinel])
    wait_until(lambda: recorder.of(sentinel), "the sentinel")
    assert stop(5.0)

    # Had the ack been lost, closing the consumer would have put the message back.
    figures = bus.queue_figures(bus.prefix + "acked")
    assert figures is not None and figures.ready == 0
    assert figures.unacked in (None, 0)
    assert len(recorder.of(message)) == 1
    assert bus.dead_letters(bus.prefix + "acked") == 0


def test_messages_wait_in_the_queue_while_no_consumer_runs(bus: EventBus, runner: Runner) -> None:
    recorder = Recorder()
    subscription = bus.subscription("durable", ["task.*"], recorder)
    stop = runner.start(subscription)
    first = event("task.created")
    bus.publish([first])
    wait_until(lambda: recorder.of(first), "the first message")
    assert stop(5.0)

    second = event("task.deleted")
    bus.publish([second])
    figures = bus.queue_figures(bus.prefix + "durable")
    assert figures is not None and (figures.ready, figures.consumers) == (1, 0)
    runner.start(subscription)
    wait_until(lambda: recorder.of(second), "the message published while stopped")


def test_stop_ends_run_within_two_seconds(bus: EventBus, runner: Runner) -> None:
    stop = runner.start(bus.subscription("stoppable", ["task.*"], Recorder()))
    queue = bus.prefix + "stoppable"
    wait_until(lambda: consumers_of(bus, queue) == 1, "the consumer to be running")
    started = time.monotonic()
    assert stop(2.0), "run() did not return within 2 s of stop"
    assert time.monotonic() - started < 2.0
    wait_until(lambda: consumers_of(bus, queue) == 0, "the consumer to be gone")


def test_exclusive_subscription_receives_and_parks_poison(bus: EventBus, runner: Runner) -> None:
    poison = event("task.cancelled", n=1)
    recorder = Recorder(failing={poison.message_id})
    runner.start(bus.subscription("cancel.w1", ["task.#"], recorder, exclusive=True, max_deliveries=2))

    # An exclusive queue exists only while its consumer runs: publish until one gets through.
    deadline = time.monotonic() + DEADLINE
    while not recorder.keys():
        assert time.monotonic() < deadline, "the exclusive subscription never started"
        bus.publish([event("task.warmup")])
        time.sleep(0.1)
    bus.publish([poison])
    wait_until(lambda: bus.dead_letters(bus.prefix + "cancel.w1") == 1, "the poison to be parked")
    assert [d.delivery_count for d in recorder.of(poison)] == [1, 2]


# ---- work queues


def test_work_get_returns_published_work_then_none(bus: EventBus) -> None:
    message = work("high", 7)
    bus.publish([message])
    client = bus.work_client()
    try:
        assert client.get("low") is None
        delivery = client.get("high")
        assert delivery is not None
        assert (delivery.body, delivery.message_id) == (message.body, message.message_id)
        assert (delivery.routing_key, delivery.headers) == ("high", {"task": "7"})
        assert (delivery.delivery_count, delivery.redelivered) == (1, False)
        client.ack(delivery)
        assert client.get("high") is None
    finally:
        client.close()


def test_work_reject_requeues_or_parks(bus: EventBus) -> None:
    bus.publish([work("high", 1)])
    client = bus.work_client()
    queue = bus.work_queue_name("high")
    try:
        first = client.get("high")
        assert first is not None
        client.reject(first, requeue=True)
        again = client.get("high")
        assert again is not None and again.message_id == first.message_id
        assert (again.delivery_count, again.redelivered) == (2, True)

        client.reject(again, requeue=False)
        assert client.get("high") is None
        wait_until(lambda: bus.dead_letters(queue) == 1, "the rejected work to be parked")
    finally:
        client.close()


def test_queue_figures_count_ready_messages(bus: EventBus) -> None:
    queue = bus.work_queue_name("normal")
    assert bus.queue_figures(bus.prefix + "no-such-queue") is None
    figures = bus.queue_figures(queue)
    assert figures is not None and (figures.ready, figures.consumers) == (0, 0)

    bus.publish([work("normal", n) for n in range(3)])
    wait_until(lambda: getattr(bus.queue_figures(queue), "ready", None) == 3, "3 ready")
    client = bus.work_client()
    try:
        taken = client.get("normal")
        assert taken is not None
        figures = bus.queue_figures(queue)
        assert figures is not None and figures.ready == 2
        assert figures.unacked in (None, 1)
        client.ack(taken)
    finally:
        client.close()


def test_ping(bus: EventBus) -> None:
    assert bus.ping() is True


# ---- RabbitMQ only: recovering from a lost connection


def _cut(connection: object) -> None:
    """Shut the socket under a pika connection, as a network failure would (the broker sees
    the connection go; pika only notices on its next I/O)."""
    connection._impl._transport._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["closed", "cut"])
def test_publisher_recovers_after_its_connection_is_lost(rabbitmq_bus: RabbitMQBus, how: str) -> None:
    before, after = work("low", 1), work("low", 2)
    rabbitmq_bus.publish([before])
    connection = rabbitmq_bus._local.publisher.connection
    if how == "closed":
        connection.close()
    else:
        _cut(connection)

    rabbitmq_bus.publish([after])
    client = rabbitmq_bus.work_client()
    try:
        got = [client.get("low"), client.get("low")]
        assert [d.message_id if d else None for d in got] == [before.message_id, after.message_id]
    finally:
        client.close()


def test_subscription_reconnects_after_its_connection_is_cut(
    rabbitmq_bus: RabbitMQBus, runner: Runner
) -> None:
    recorder = Recorder()
    subscription = rabbitmq_bus.subscription("resilient", ["task.*"], recorder)
    runner.start(subscription)
    first, second = event("task.created"), event("task.updated")
    rabbitmq_bus.publish([first])
    wait_until(lambda: recorder.of(first), "the first message")

    _cut(subscription._connection)  # type: ignore[attr-defined]
    rabbitmq_bus.publish([second])
    wait_until(lambda: recorder.of(second), "a message after the reconnect")


def test_work_client_drops_stale_tags_after_its_connection_is_cut(
    rabbitmq_bus: RabbitMQBus,
) -> None:
    message = work("critical", 1)
    rabbitmq_bus.publish([message])
    client = rabbitmq_bus.work_client()
    try:
        held = client.get("critical")
        assert held is not None
        _cut(client._connection)  # type: ignore[attr-defined]
        # The broker requeued it when the connection went; the next get reconnects and sees it.
        queue = rabbitmq_bus.work_queue_name("critical")
        wait_until(lambda: getattr(rabbitmq_bus.queue_figures(queue), "ready", None) == 1, "requeue")
        again = client.get("critical")
        assert again is not None and again.message_id == message.message_id
        assert again.delivery_count == 2
        client.ack(held)  # stale tag: logged and dropped, no error, no channel closed
        client.ack(again)
        assert client.get("critical") is None
    finally:
        client.close()
