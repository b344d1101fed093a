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
from collections.abc import Callable, Iterator

import pytest

from shared.events.bus import (
    EVENTS_EXCHANGE,
    WORK_EXCHANGE,
    Delivery,
    EventBus,
    LinkNews,
    OutgoingMessage,
    TransientFailure,
    WorkerLink,
)
from shared.events.rabbitmq_bus import RabbitMQBus
from shared.testing.fixtures import wait_until

from .conftest import Runner

# the bus's mechanics, with bodies of its own rather than the catalog's events
pytestmark = [pytest.mark.timeout(60), pytest.mark.unchecked_events]

DEADLINE = 15.0


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

    wait_until(lambda: recorder.of(sentinel), DEADLINE, message="the sentinel event")
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

    wait_until(lambda: first.of(message) and second.of(message), DEADLINE, message="both queues to get it")


def test_failing_handler_is_redelivered_then_parked(bus: EventBus, runner: Runner) -> None:
    poison, sentinel = event("task.created", n=1), event("task.created", n=2)
    recorder = Recorder(failing={poison.message_id})
    runner.start(bus.subscription("poison", ["task.*"], recorder, max_deliveries=3))
    bus.publish([poison])

    wait_until(
        lambda: bus.dead_letters(bus.prefix + "poison") == 1, DEADLINE, message="the poison to be parked"
    )
    bus.publish([sentinel])
    wait_until(lambda: recorder.of(sentinel), DEADLINE, message="the sentinel after the poison was parked")
    attempts = recorder.of(poison)
    assert [d.delivery_count for d in attempts] == [1, 2, 3]
    assert [d.redelivered for d in attempts] == [False, True, True]
    assert bus.dead_letters(bus.prefix + "poison") == 1


def test_acknowledged_message_is_not_redelivered(bus: EventBus, runner: Runner) -> None:
    recorder = Recorder()
    stop = runner.start(bus.subscription("acked", ["task.*"], recorder))
    message, sentinel = event("task.started"), event("task.progress")
    bus.publish([message])
    wait_until(lambda: recorder.of(message), DEADLINE, message="the message")
    bus.publish([sentinel])
    wait_until(lambda: recorder.of(sentinel), DEADLINE, message="the sentinel")
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
    wait_until(lambda: recorder.of(first), DEADLINE, message="the first message")
    assert stop(5.0)

    second = event("task.deleted")
    bus.publish([second])
    figures = bus.queue_figures(bus.prefix + "durable")
    assert figures is not None and (figures.ready, figures.consumers) == (1, 0)
    runner.start(subscription)
    wait_until(lambda: recorder.of(second), DEADLINE, message="the message published while stopped")


def test_stop_ends_run_within_two_seconds(bus: EventBus, runner: Runner) -> None:
    stop = runner.start(bus.subscription("stoppable", ["task.*"], Recorder()))
    queue = bus.prefix + "stoppable"
    wait_until(lambda: consumers_of(bus, queue) == 1, DEADLINE, message="the consumer to be running")
    started = time.monotonic()
    assert stop(2.0), "run() did not return within 2 s of stop"
    assert time.monotonic() - started < 2.0
    wait_until(lambda: consumers_of(bus, queue) == 0, DEADLINE, message="the consumer to be gone")


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
    wait_until(
        lambda: bus.dead_letters(bus.prefix + "cancel.w1") == 1, DEADLINE, message="the poison to be parked"
    )
    assert [d.delivery_count for d in recorder.of(poison)] == [1, 2]


# ---- filtered bindings, transient failures, dead letters


def test_filtered_binding_delivers_only_events_with_the_headers(bus: EventBus, runner: Runner) -> None:
    recorder = Recorder()
    runner.start(
        bus.subscription("filtered", ["task.created"], recorder, filtered={"task.*": {"periodic": "1"}})
    )
    created, plain, periodic = event("task.created"), event("task.completed"), event("task.completed")
    periodic = OutgoingMessage(
        EVENTS_EXCHANGE, "task.completed", periodic.body, periodic.message_id, {"periodic": "1"}
    )
    bus.publish([created, plain, periodic])

    wait_until(lambda: recorder.of(periodic), DEADLINE, message="the periodic event")
    assert recorder.of(created) and not recorder.of(plain)
    assert len(recorder.of(created)) == 1  # matched by both bindings, delivered once


def test_a_retired_binding_is_removed_from_the_queue_an_earlier_version_bound(
    bus: EventBus, runner: Runner
) -> None:
    bus.subscription("moved", ["task.created", "task.deleted"], Recorder())  # the earlier version
    recorder = Recorder()
    runner.start(
        bus.subscription(
            "moved",
            [],
            recorder,
            filtered={"task.created": {"periodic": "1"}},
            retired=["task.created", "task.deleted"],
        )
    )
    plain, deleted, periodic = event("task.created"), event("task.deleted"), event("task.created")
    periodic = OutgoingMessage(
        EVENTS_EXCHANGE, "task.created", periodic.body, periodic.message_id, {"periodic": "1"}
    )
    bus.publish([plain, deleted, periodic])

    wait_until(lambda: recorder.of(periodic), DEADLINE, message="the periodic event")
    assert not recorder.of(plain) and not recorder.of(deleted)  # published before it, in one queue


def test_a_pattern_cannot_be_both_bound_and_retired(bus: EventBus) -> None:
    with pytest.raises(ValueError, match="both bound and retired"):
        bus.subscription("confused", ["task.created"], Recorder(), retired=["task.created"])


class FlakyDatabase:
    """A handler whose database is away for its first `outage` calls."""

    def __init__(self, outage: int) -> None:
        self.calls = 0
        self.outage = outage
        self.applied: list[Delivery] = []

    def __call__(self, delivery: Delivery) -> None:
        self.calls += 1
        if self.calls <= self.outage:
            raise TransientFailure("database unreachable")
        self.applied.append(delivery)


def test_a_transient_failure_is_retried_without_counting_towards_the_dead_letters(
    bus: EventBus, runner: Runner
) -> None:
    handler = FlakyDatabase(outage=3)
    runner.start(bus.subscription("transient", ["task.*"], handler, max_deliveries=2))
    message = event("task.created")
    bus.publish([message])

    wait_until(lambda: handler.applied, DEADLINE, message="the event applied once the database is back")
    assert handler.applied[0].message_id == message.message_id
    assert handler.applied[0].delivery_count == 1
    assert bus.dead_letters(bus.prefix + "transient") == 0


def test_dead_letters_are_listed_and_replayed(bus: EventBus, runner: Runner) -> None:
    first, second = event("task.created", n=1), event("task.created", n=2)
    recorder = Recorder(failing={first.message_id, second.message_id})
    queue = bus.prefix + "replayed"
    runner.start(bus.subscription("replayed", ["task.*"], recorder, max_deliveries=1))
    bus.publish([first, second])
    wait_until(lambda: bus.dead_letters(queue) == 2, DEADLINE, message="both to be parked")

    parked = bus.dead_lettered(queue)
    assert sorted(p.message_id or "" for p in parked) == sorted([first.message_id, second.message_id])
    assert {p.routing_key for p in parked} == {"task.created"} and parked[0].body in (first.body, second.body)
    assert bus.dead_letters(queue) == 2  # listing leaves them parked

    recorder.failing.clear()  # the fault is fixed: replay one of them
    assert bus.replay_dead_letters(queue, [second.message_id]) == 1
    wait_until(lambda: len(recorder.of(second)) == 2, DEADLINE, message="the replayed event applied")
    wait_until(lambda: bus.dead_letters(queue) == 1, DEADLINE, message="only the other one left parked")
    assert [p.message_id for p in bus.dead_lettered(queue)] == [first.message_id]


# ---- worker links


def poll_until(
    link: WorkerLink, what: str, done: Callable[[LinkNews], bool], timeout: float = DEADLINE
) -> LinkNews:
    """Poll the link, gathering its news, until `done(gathered)`."""
    gathered = LinkNews()
    deadline = time.monotonic() + timeout
    while not done(gathered):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        news = link.poll(0.05)
        gathered.work += news.work
        gathered.control += news.control
        gathered.confirmed += news.confirmed
        gathered.refused += news.refused
        gathered.reconnected = gathered.reconnected or news.reconnected
    return gathered


@pytest.fixture
def links(bus: EventBus) -> Iterator[Callable[..., WorkerLink]]:
    made: list[WorkerLink] = []

    def make(priorities: list[str], prefetch: int = 4, name: str | None = None) -> WorkerLink:
        link = bus.worker_link(name or f"w{len(made)}", priorities, prefetch, ["task.cancelled"])
        made.append(link)
        return link

    yield make
    for link in made:
        link.close()


def test_work_is_pushed_to_a_worker_link(bus: EventBus, links: Callable[..., WorkerLink]) -> None:
    link = links(["high", "low"])
    message = work("high", 7)
    bus.publish([message])

    news = poll_until(link, "the work message", lambda n: bool(n.work))
    delivery = news.work[0]
    assert (delivery.body, delivery.message_id) == (message.body, message.message_id)
    assert (delivery.routing_key, delivery.headers) == ("high", {"task": "7"})
    assert (delivery.delivery_count, delivery.redelivered) == (1, False)
    link.ack(delivery)
    wait_until(
        lambda: getattr(bus.queue_figures(bus.work_queue_name("high")), "ready", None) == 0,
        DEADLINE,
        message="empty",
    )
    assert not link.poll(0.2).work


def test_a_worker_link_holds_at_most_its_prefetch(bus: EventBus, links: Callable[..., WorkerLink]) -> None:
    link = links(["normal"], prefetch=2)
    bus.publish([work("normal", n) for n in range(5)])

    held = poll_until(link, "two held", lambda n: len(n.work) >= 2).work
    assert len(held) == 2 and not link.poll(0.3).work
    link.ack(held[0])
    more = poll_until(link, "one more after an ack", lambda n: bool(n.work)).work
    assert len(more) == 1
    figures = bus.queue_figures(bus.work_queue_name("normal"))
    assert figures is not None and figures.ready == 2 and figures.consumers == 1


def test_a_worker_link_takes_work_with_the_prefetch_it_is_given(
    bus: EventBus, links: Callable[..., WorkerLink]
) -> None:
    link = links(["normal"], prefetch=2)
    bus.publish([work("normal", n) for n in range(8)])
    held = poll_until(link, "two held", lambda n: len(n.work) >= 2).work
    link.take_work(0)
    for delivery in held:
        link.ack(delivery)
    assert not link.poll(0.3).work  # stopped: acks make no room
    link.take_work(1)
    one = poll_until(link, "one taken", lambda n: bool(n.work)).work
    assert len(one) == 1 and not link.poll(0.3).work
    link.ack(one[0])
    link.take_work(3)
    more = poll_until(link, "three more", lambda n: len(n.work) >= 3).work
    assert len(more) == 3 and not link.poll(0.3).work
    figures = bus.queue_figures(bus.work_queue_name("normal"))
    assert figures is not None and figures.ready == 2 and figures.consumers == 1
    for delivery in more:
        link.ack(delivery)


def test_a_worker_link_rejects_to_requeue_or_park(bus: EventBus, links: Callable[..., WorkerLink]) -> None:
    link = links(["high"])
    bus.publish([work("high", 1)])
    queue = bus.work_queue_name("high")

    first = poll_until(link, "the message", lambda n: bool(n.work)).work[0]
    link.reject(first, requeue=True)
    again = poll_until(link, "the message again", lambda n: bool(n.work)).work[0]
    assert again.message_id == first.message_id
    assert (again.delivery_count, again.redelivered) == (2, True)
    link.reject(again, requeue=False)
    wait_until(lambda: bus.dead_letters(queue) == 1, DEADLINE, message="the rejected work to be parked")


def test_a_worker_link_hears_its_control_broadcasts(bus: EventBus, links: Callable[..., WorkerLink]) -> None:
    link = links(["low"])
    # its private queue exists once the link is connected: publish until one gets through
    deadline = time.monotonic() + DEADLINE
    got: list[Delivery] = []
    while not got:
        assert time.monotonic() < deadline, "the control queue never received"
        bus.publish([event("task.cancelled", task_id="t1")])
        got = link.poll(0.1).control
    link.ack(got[0])
    assert json.loads(got[0].body)["data"] == {"task_id": "t1"}


def test_a_worker_link_publishes_and_later_confirms(
    bus: EventBus, runner: Runner, links: Callable[..., WorkerLink]
) -> None:
    recorder = Recorder()
    runner.start(bus.subscription("reports", ["attempt.*"], recorder))
    link = links(["low"])
    reports = [event("attempt.completed", n=n) for n in range(3)]
    link.publish(reports)

    news = poll_until(link, "the confirms", lambda n: len(n.confirmed) == 3)
    assert sorted(news.confirmed) == sorted(r.message_id for r in reports)
    wait_until(lambda: all(recorder.of(r) for r in reports), DEADLINE, message="the reports delivered")


def test_queue_figures_count_ready_messages(bus: EventBus, links: Callable[..., WorkerLink]) -> None:
    queue = bus.work_queue_name("normal")
    assert bus.queue_figures(bus.prefix + "no-such-queue") is None
    figures = bus.queue_figures(queue)
    assert figures is not None and (figures.ready, figures.consumers) == (0, 0)

    bus.publish([work("normal", n) for n in range(3)])
    wait_until(lambda: getattr(bus.queue_figures(queue), "ready", None) == 3, DEADLINE, message="3 ready")
    link = links(["normal"], prefetch=1)
    taken = poll_until(link, "one taken", lambda n: bool(n.work)).work[0]
    wait_until(lambda: getattr(bus.queue_figures(queue), "ready", None) == 2, DEADLINE, message="2 ready")
    figures = bus.queue_figures(queue)
    assert figures is not None and figures.unacked in (None, 1)
    link.ack(taken)


def test_ping(bus: EventBus) -> None:
    assert bus.ping() is True


# ---- RabbitMQ only: recovering from a lost connection


def _cut(connection: object) -> None:
    """Shut the socket under a connection, as a network failure would (the broker sees the
    connection go; the client only notices on its next I/O)."""
    connection.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]


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
    link = rabbitmq_bus.worker_link("w-recover", ["low"], 4, ["task.cancelled"])
    try:
        got = poll_until(link, "both messages", lambda n: len(n.work) == 2).work
        assert [d.message_id for d in got] == [before.message_id, after.message_id]
    finally:
        link.close()


def test_subscription_reconnects_after_its_connection_is_cut(
    rabbitmq_bus: RabbitMQBus, runner: Runner
) -> None:
    recorder = Recorder()
    subscription = rabbitmq_bus.subscription("resilient", ["task.*"], recorder)
    runner.start(subscription)
    first, second = event("task.created"), event("task.updated")
    rabbitmq_bus.publish([first])
    wait_until(lambda: recorder.of(first), DEADLINE, message="the first message")

    _cut(subscription._connection)  # type: ignore[attr-defined]
    rabbitmq_bus.publish([second])
    wait_until(lambda: recorder.of(second), DEADLINE, message="a message after the reconnect")


def test_a_worker_link_reconnects_and_drops_stale_deliveries(rabbitmq_bus: RabbitMQBus) -> None:
    message = work("critical", 1)
    rabbitmq_bus.publish([message])
    link = rabbitmq_bus.worker_link("w-cut", ["critical"], 4, ["task.cancelled"])
    try:
        held = poll_until(link, "the message", lambda n: bool(n.work)).work[0]
        _cut(link._connection)  # type: ignore[attr-defined]
        # the broker requeues it when the connection goes; the link reconnects and gets it again
        news = poll_until(link, "the redelivery", lambda n: n.reconnected and bool(n.work), timeout=30)
        again = news.work[0]
        assert again.message_id == message.message_id and again.delivery_count == 2
        link.ack(held)  # stale: dropped quietly, nothing breaks
        link.ack(again)
        queue = rabbitmq_bus.work_queue_name("critical")
        wait_until(
            lambda: getattr(rabbitmq_bus.queue_figures(queue), "ready", None) == 0,
            DEADLINE,
            message="settled",
        )
        assert not link.poll(0.3).work
    finally:
        link.close()


def test_an_operator_lists_and_replays_dead_letters_from_the_command_line(
    rabbitmq_bus: RabbitMQBus, runner: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.dead_letters import main

    poison = event("task.created", n=1)
    recorder = Recorder(failing={poison.message_id})
    runner.start(rabbitmq_bus.subscription("operated", ["task.*"], recorder, max_deliveries=1))
    rabbitmq_bus.publish([poison])
    wait_until(
        lambda: rabbitmq_bus.dead_letters(rabbitmq_bus.prefix + "operated") == 1, DEADLINE, message="parked"
    )

    assert main(["list"], bus=rabbitmq_bus) == 0
    assert json.loads(capsys.readouterr().out) == {"operated": 1}
    assert main(["list", "operated"], bus=rabbitmq_bus) == 0
    [shown] = json.loads(capsys.readouterr().out)
    assert (shown["message_id"], shown["routing_key"]) == (poison.message_id, "task.created")

    recorder.failing.clear()
    assert main(["replay", "operated"], bus=rabbitmq_bus) == 0
    assert json.loads(capsys.readouterr().out) == {"queue": "operated", "replayed": 1}
    wait_until(lambda: len(recorder.of(poison)) == 2, DEADLINE, message="applied once it is back")
    assert rabbitmq_bus.dead_letters(rabbitmq_bus.prefix + "operated") == 0
