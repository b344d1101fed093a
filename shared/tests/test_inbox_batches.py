"""Batched event application (shared/events/inbox_consumer.py, delivery_batches.py), against both
bus adapters: many deliveries per transaction, and failures that behave as without batches."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from shared.db import make_engine, make_session_factory, messaging_tables
from shared.events.bus import EVENTS_EXCHANGE, Delivery, EventBus, OutgoingMessage
from shared.events.envelope import Envelope
from shared.events.inbox_consumer import InboxConsumer
from shared.prometheus_metrics import EVENTS_CONSUMED, EVENTS_DUPLICATE
from shared.testing.fixtures import wait_until
from shared.unit_of_work import UnitOfWork

from .conftest import Runner
from .test_bus_contract import DEADLINE

# the inbox's mechanics, with an event type of its own rather than the catalog's
pytestmark = [pytest.mark.timeout(60), pytest.mark.unchecked_events]

metadata = MetaData()
outbox, inbox = messaging_tables(metadata)
applied = Table(
    "applied",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("n", Integer, nullable=False),
)


class Service:
    """A consumer on a SQLite database whose handler records each event it applies, fails on the
    events it is told to, and counts the transactions it sees."""

    def __init__(self, path: Path, batch_size: int = 50) -> None:
        self.engine = make_engine(f"sqlite:///{path}")
        metadata.create_all(self.engine)
        self.sessions = make_session_factory(self.engine)
        self.poison: set[str] = set()
        self.rolls_back: set[str] = set()
        self.calls: list[str] = []
        self.batches: list[int] = []
        self._lock = threading.Lock()
        self.consumer = InboxConsumer(
            f"c{uuid.uuid4().hex[:6]}",
            "tests",
            lambda: UnitOfWork(self.sessions, outbox, "tests"),
            inbox,
            {"thing.happened": self.handle},
            batch_size=batch_size,
        )
        apply_batch = self.consumer.apply_batch

        def counted(deliveries: Sequence[Delivery]) -> None:
            self.batches.append(len(deliveries))
            apply_batch(deliveries)

        self.consumer.apply_batch = counted  # type: ignore[method-assign]

    def handle(self, uow: UnitOfWork, envelope: Envelope) -> None:
        with self._lock:
            self.calls.append(envelope.event_id)
        if envelope.event_id in self.poison:
            raise RuntimeError("poison")
        if envelope.event_id in self.rolls_back:
            uow.rollback()  # as a handler recovering from a unique-key race does
        uow.session.execute(insert(applied).values(event_id=envelope.event_id, n=envelope.data["n"]))

    def applied(self) -> list[tuple[str, int]]:
        with self.engine.connect() as conn:
            return [
                tuple(r) for r in conn.execute(select(applied.c.event_id, applied.c.n).order_by(applied.c.id))
            ]

    def inbox_rows(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(inbox)).scalar_one()

    def calls_of(self, event_id: str) -> int:
        with self._lock:
            return self.calls.count(event_id)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    made = Service(tmp_path / "batches.db")
    yield made
    made.engine.dispose()


def events(count: int) -> list[OutgoingMessage]:
    out = []
    for n in range(count):
        envelope = Envelope(event_type="thing.happened", producer="tests", brand_id=1, data={"n": n})
        out.append(
            OutgoingMessage(EVENTS_EXCHANGE, envelope.event_type, envelope.to_json(), envelope.event_id)
        )
    return out


def first_deliveries(messages: Sequence[OutgoingMessage]) -> list[Delivery]:
    """The messages as a broker hands them over the first time."""
    return [
        Delivery(
            body=m.body,
            routing_key=m.routing_key,
            message_id=m.message_id,
            redelivered=False,
            delivery_count=1,
        )
        for m in messages
    ]


def counter(metric: object, *labels: str) -> float:
    return metric.labels(*labels)._value.get()  # type: ignore[attr-defined]


def test_a_backlog_is_applied_in_batches_once_each_in_order(
    bus: EventBus, runner: Runner, service: Service
) -> None:
    messages = events(120)
    subscription = service.consumer.subscription(bus, "batched")  # declares the queue
    bus.publish(messages)  # waiting before the consumer starts: it finds a backlog
    consumed = counter(EVENTS_CONSUMED, "tests", service.consumer.name, "thing.happened")
    runner.start(subscription)

    wait_until(lambda: len(service.applied()) == 120, DEADLINE, message="every event applied")
    assert service.applied() == [(m.message_id, n) for n, m in enumerate(messages)]
    assert service.inbox_rows() == 120
    assert max(service.batches) > 1, "a backlog should be taken in batches"
    assert max(service.batches) <= 50
    assert counter(EVENTS_CONSUMED, "tests", service.consumer.name, "thing.happened") == consumed + 120
    figures = bus.queue_figures(bus.prefix + "batched")
    wait_until(
        lambda: getattr(bus.queue_figures(bus.prefix + "batched"), "ready", 1) == 0,
        DEADLINE,
        message="all acked",
    )
    assert figures is not None and figures.unacked in (None, 0)


def test_a_poison_event_in_a_batch_is_dead_lettered_alone(
    bus: EventBus, runner: Runner, service: Service
) -> None:
    messages = events(10)
    poison = messages[4]
    service.poison.add(poison.message_id)
    subscription = service.consumer.subscription(bus, "poisoned")
    bus.publish(messages)
    runner.start(subscription)

    wait_until(
        lambda: bus.dead_letters(bus.prefix + "poisoned") == 1, DEADLINE, message="the poison to be parked"
    )
    good = [(m.message_id, n) for n, m in enumerate(messages) if m is not poison]
    wait_until(lambda: service.applied() == good, DEADLINE, message="the others applied, in order")
    # the bounded deliveries of the queue (5 by default), not more: batches do not add any
    assert service.calls_of(poison.message_id) == 5 + 1  # + its failed first batch
    sentinel = events(1)[0]
    bus.publish([sentinel])
    wait_until(lambda: len(service.applied()) == 10, DEADLINE, message="a later event")
    assert all(service.calls_of(m.message_id) <= 2 for m in messages if m is not poison)
    assert service.inbox_rows() == 10


def test_a_redelivered_batch_changes_nothing(service: Service) -> None:
    deliveries = first_deliveries(events(5))
    duplicates = counter(EVENTS_DUPLICATE, "tests", service.consumer.name)
    service.consumer.apply_batch(deliveries)
    before = service.applied()
    service.consumer.apply_batch(deliveries)  # the broker gave them again (an ack was lost)
    service.consumer.apply_batch(deliveries[2:] + deliveries[:1] + deliveries[:1])
    assert service.applied() == before and len(before) == 5
    assert counter(EVENTS_DUPLICATE, "tests", service.consumer.name) == duplicates + 5 + 5


def test_a_handler_ending_the_shared_transaction_sends_the_batch_one_by_one(service: Service) -> None:
    """A handler that rolls back (a unique-key race) must not drop the work of the events before
    it in the batch: the batch fails as a whole and each event gets a transaction of its own."""
    deliveries = first_deliveries(events(3))
    service.rolls_back.add(deliveries[1].message_id or "")
    with pytest.raises(RuntimeError, match="shared"):
        service.consumer.apply_batch(deliveries)
    assert service.applied() == [] and service.inbox_rows() == 0
    for delivery in deliveries:
        service.consumer(delivery)
    assert [n for _, n in service.applied()] == [0, 1, 2]
