"""The bus port. Two adapters implement it (RabbitMQ through py-amqp, and an in-process one for the
embedded mode) and pass the same contract tests (shared/tests/test_bus_contract.py).

Two kinds of destination exist:
- the events exchange (topic, routing key = event type): each consumer binds its own durable
  queue, to every event of a pattern or only to those whose headers match (`filtered`);
- the work queues, one per priority, that workers consume from with a bounded prefetch.

Every consuming queue has a dead-letter queue: a delivery whose handler fails is requeued, and
after `max_deliveries` deliveries it is parked in `<queue>.dead` instead of looping forever. A
handler that cannot reach its own database raises TransientFailure instead: the delivery is kept
(never counted towards the poison limit) and applied again once the database answers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from threading import Event as StopSignal

from ..task_states import HIGHEST_FIRST

EVENTS_EXCHANGE = "events"
WORK_EXCHANGE = "work"
PRIORITIES: tuple[str, ...] = HIGHEST_FIRST  # a work queue per priority
# where core parks a task that lost its worker too many times (counted, inspectable, never re-run)
DEAD_WORK = "dead"
WORK_KEYS: tuple[str, ...] = (*PRIORITIES, DEAD_WORK)
DEFAULT_MAX_DELIVERIES = 5


class BusUnavailable(RuntimeError):
    """The broker could not take the message now (down, refused, not confirmed). Retry later."""


class TransientFailure(RuntimeError):
    """A handler could not apply its deliveries for a reason that heals by itself (its database is
    unreachable): keep them, wait, apply them again. Never a reason to dead-letter."""


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
    tag: object = None  # adapter-specific handle, used to settle it


@dataclass(frozen=True)
class QueueFigures:
    ready: int
    unacked: int | None  # None when the broker cannot tell without its management API
    consumers: int


@dataclass(frozen=True)
class DeadLetter:
    """A message parked in a dead-letter queue, as an operator inspects it."""

    message_id: str | None
    routing_key: str
    body: bytes
    headers: dict[str, str]


Handler = Callable[[Delivery], None]
# Applies several deliveries (in their order) all at once or not at all: its return means every
# one is committed; an exception means none is, and the subscription applies them one by one.
BatchHandler = Callable[[Sequence[Delivery]], None]
# routing pattern -> headers an event must carry to be delivered through that binding
FilteredBindings = Mapping[str, Mapping[str, str]]


class Subscription(ABC):
    """A consumer loop on one queue. `run` blocks until `stop` is set; the handler's return means
    'committed, acknowledge'; an exception means 'not applied, deliver again later'."""

    @abstractmethod
    def run(self, stop: StopSignal) -> None: ...


@dataclass
class LinkNews:
    """What a worker's link brought since the last look."""

    work: list[Delivery] = field(default_factory=list)
    control: list[Delivery] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)  # message ids the broker took
    refused: list[str] = field(default_factory=list)  # message ids to publish again
    # the connection was lost and made again: unsettled work deliveries went back to their
    # queues, and publishes not yet confirmed must be published again
    reconnected: bool = False


class WorkerLink(ABC):
    """Everything one worker exchanges with the broker, driven by the worker's own loop: work
    pushed from its queues (at most the prefetch unsettled per queue), the broadcasts of its control
    queue, and its reports, published at once and confirmed later (`poll` tells which)."""

    @abstractmethod
    def fileno(self) -> int | None:
        """Readable when news may be waiting (for select); None while disconnected."""

    @abstractmethod
    def poll(self, timeout: float = 0.0) -> LinkNews: ...

    @abstractmethod
    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Send without waiting; a broker that is unreachable makes the messages `refused`."""

    @abstractmethod
    def ack(self, delivery: Delivery) -> None: ...

    @abstractmethod
    def reject(self, delivery: Delivery, requeue: bool) -> None: ...

    @abstractmethod
    def take_work(self, prefetch: int) -> None:
        """Receive work with at most `prefetch` unsettled deliveries per queue from now on, or none
        (0); what it holds stays held. A worker holds less while its slots run long attempts, so
        that the queue's other workers get what it could not start soon."""

    @abstractmethod
    def close(self) -> None: ...


@dataclass(frozen=True)
class SubscriptionSpec:
    """What `EventBus.subscription` was asked for, as each adapter receives it."""

    queue: str
    bindings: tuple[str, ...]
    handler: Handler
    filtered: dict[str, dict[str, str]]
    prefetch: int
    max_deliveries: int
    exclusive: bool
    batch_handler: BatchHandler | None
    batch_size: int
    batch_linger: float
    retired: tuple[str, ...] = ()


class EventBus(ABC):
    """Factory of publishers, subscriptions and worker links. Adapters never share a connection
    between threads: each object it returns is used by the thread that made it."""

    prefix: str

    @abstractmethod
    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish every message, returning once the broker has confirmed all of them
        (persistent). Raises BusUnavailable if any was not confirmed; callers retry all of them."""

    def subscription(
        self,
        queue: str,
        bindings: Sequence[str],
        handler: Handler,
        *,
        filtered: FilteredBindings | None = None,
        prefetch: int = 20,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        exclusive: bool = False,
        batch_handler: BatchHandler | None = None,
        batch_size: int = 1,
        batch_linger: float = 0.0,
        retired: Sequence[str] = (),
    ) -> Subscription:
        """A durable queue named `queue`, bound to the events exchange with `bindings` (topic
        patterns such as `task.*`) and with `filtered` ones (a pattern and the headers an event
        needs, e.g. `{"task.*": {"periodic": "1"}}`: the broker drops the others). `exclusive`
        makes a private, auto-deleted queue (for broadcasts only live workers care about).
        With `batch_handler`, up to `batch_size` deliveries received (waiting `batch_linger`
        seconds at most for more) go to it at once and are acknowledged after it returns; see
        shared/events/delivery_batches.py. `retired`: patterns an earlier version bound directly
        and this one does not (the broker keeps a durable queue's bindings across deploys, so
        they are removed when the queue is declared)."""
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        kept = sorted(set(retired) & set(bindings))
        if kept:
            raise ValueError(f"patterns both bound and retired: {kept}")
        return self._subscribe(
            SubscriptionSpec(
                queue=self.prefix + queue,
                bindings=tuple(bindings),
                handler=handler,
                filtered={pattern: dict(headers) for pattern, headers in (filtered or {}).items()},
                prefetch=prefetch,
                max_deliveries=max_deliveries,
                exclusive=exclusive,
                batch_handler=batch_handler,
                batch_size=max(1, batch_size),
                batch_linger=max(0.0, batch_linger),
                retired=tuple(retired),
            )
        )

    @abstractmethod
    def _subscribe(self, spec: SubscriptionSpec) -> Subscription:
        """The adapter's subscription for `spec` (the arguments of `subscription`, checked, with
        the bus's prefix on the queue's name)."""

    @abstractmethod
    def worker_link(
        self, name: str, priorities: Sequence[str], prefetch: int, control_bindings: Sequence[str]
    ) -> WorkerLink:
        """A worker's link: consumes the work queues of `priorities` and the private control
        queue `worker.<name>.control` bound to `control_bindings`."""

    @abstractmethod
    def queue_figures(self, queue: str) -> QueueFigures | None:
        """Live figures of a queue, or None if it does not exist or the broker is unreachable."""

    @abstractmethod
    def dead_letters(self, queue: str) -> int:
        """How many messages are parked in `queue`'s dead-letter queue."""

    @abstractmethod
    def dead_lettered(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """The first `limit` messages parked for `queue`, left where they are."""

    @abstractmethod
    def replay_dead_letters(self, queue: str, message_ids: Sequence[str] | None = None) -> int:
        """Put parked messages (all, or those with these ids) back on `queue`, for its consumer
        to apply again; returns how many. Each keeps its id, so an inbox applies it once."""

    @abstractmethod
    def ping(self) -> bool: ...

    def work_queue_name(self, priority: str) -> str:
        return f"{self.prefix}work.{priority}"

    def control_queue_name(self, worker: str) -> str:
        return f"{self.prefix}worker.{worker}.control"

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
