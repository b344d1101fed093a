"""The bus port. Two adapters implement it (RabbitMQ through pika, and an in-process one for the
embedded mode) and pass the same contract tests (shared/tests/test_bus_contract.py).

Two kinds of destination exist:
- the events exchange (topic, routing key = event type): each consumer binds its own durable queue;
- the work queues, one per priority, that workers pull from (`get`), highest priority first.

Every consuming queue has a dead-letter queue: a delivery whose handler raises is requeued, and
after `max_deliveries` deliveries it is parked in `<queue>.dead` instead of looping forever.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from threading import Event as StopSignal

EVENTS_EXCHANGE = "events"
WORK_EXCHANGE = "work"
PRIORITIES: tuple[str, ...] = ("critical", "high", "normal", "low")
# where core parks a task that lost its worker too many times (counted, inspectable, never re-run)
DEAD_WORK = "dead"
WORK_KEYS: tuple[str, ...] = (*PRIORITIES, DEAD_WORK)
DEFAULT_MAX_DELIVERIES = 5


class BusUnavailable(RuntimeError):
    """The broker could not take the message now (down, refused, not confirmed). Retry later."""


@dataclass(frozen=True)
class OutgoingMessage:
    exchange: str  # EVENTS_EXCHANGE or WORK_EXCHANGE
    routing_key: str  # event type, or the priority for work messages
    body: bytes
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Delivery:
    body: bytes
    routing_key: str
    message_id: str | None
    redelivered: bool
    delivery_count: int  # 1 on first delivery
    headers: dict[str, str] = field(default_factory=dict)
    tag: object = None  # adapter-specific handle, used by ack/reject


@dataclass(frozen=True)
class QueueFigures:
    ready: int
    unacked: int | None  # None when the broker cannot tell without its management API
    consumers: int


Handler = Callable[[Delivery], None]
# Applies several deliveries (in their order) all at once or not at all: its return means every
# one is committed; an exception means none is, and the subscription applies them one by one.
BatchHandler = Callable[[Sequence[Delivery]], None]


class Subscription(ABC):
    """A consumer loop on one queue. `run` blocks until `stop` is set; the handler's return means
    'committed, acknowledge'; an exception means 'not applied, deliver again later'."""

    @abstractmethod
    def run(self, stop: StopSignal) -> None: ...


class WorkQueueClient(ABC):
    """Pull access to the work queues, for workers: take one message when a slot is free."""

    @abstractmethod
    def get(self, priority: str) -> Delivery | None: ...

    @abstractmethod
    def ack(self, delivery: Delivery) -> None: ...

    @abstractmethod
    def reject(self, delivery: Delivery, requeue: bool) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class EventBus(ABC):
    """Factory of publishers, subscriptions and work-queue clients. Adapters never share a
    connection between threads: each object it returns is used by the thread that made it."""

    prefix: str

    @abstractmethod
    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish every message, returning once the broker has confirmed each (persistent).
        Raises BusUnavailable if any was not confirmed; callers retry all of them."""

    @abstractmethod
    def subscription(
        self,
        queue: str,
        bindings: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 20,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        exclusive: bool = False,
        batch_handler: BatchHandler | None = None,
        batch_size: int = 1,
    ) -> Subscription:
        """A durable queue named `queue`, bound to the events exchange with `bindings`
        (topic patterns such as `task.*`). `exclusive` makes a private, auto-deleted queue
        (for broadcasts such as cancellations that only live workers care about).
        With `batch_handler`, up to `batch_size` deliveries already received (waiting a few
        milliseconds at most for more) go to it at once and are acknowledged after it returns;
        see shared/events/delivery_batches.py."""

    @abstractmethod
    def work_client(self) -> WorkQueueClient: ...

    @abstractmethod
    def queue_figures(self, queue: str) -> QueueFigures | None:
        """Live figures of a queue, or None if it does not exist or the broker is unreachable."""

    @abstractmethod
    def dead_letters(self, queue: str) -> int:
        """How many messages are parked in `queue`'s dead-letter queue."""

    @abstractmethod
    def ping(self) -> bool: ...

    def work_queue_name(self, priority: str) -> str:
        return f"{self.prefix}work.{priority}"

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
