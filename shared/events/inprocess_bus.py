"""The in-process adapter of the bus port, for the embedded mode (`make run`) and unit tests.

It keeps RabbitMQ's semantics that the code relies on: topic routing to bound queues, delivery
until acknowledged, redelivery after a handler error, dead-lettering after `max_deliveries`,
and pull access to the work queues. Nothing survives the process, which is fine for a single
process whose outbox rows (in SQLite) are the durable copy.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from threading import Event as StopSignal

from .bus import (
    DEFAULT_MAX_DELIVERIES,
    EVENTS_EXCHANGE,
    WORK_KEYS,
    BatchHandler,
    Delivery,
    EventBus,
    Handler,
    OutgoingMessage,
    QueueFigures,
    Subscription,
    WorkQueueClient,
)
from .delivery_batches import apply_deliveries


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: `*` is one word, `#` is zero or more words."""
    parts = []
    for word in pattern.split("."):
        parts.append({"*": r"[^.]+", "#": r".*"}.get(word, re.escape(word)))
    regex = r"\.".join(parts).replace(r"\..*", r"(\..*)?").replace(r".*\.", r"(.*\.)?")
    return re.fullmatch(regex, key) is not None


@dataclass
class _Queue:
    name: str
    bindings: list[str]
    max_deliveries: int
    ready: deque[Delivery] = field(default_factory=deque)
    unacked: int = 0
    consumers: int = 0
    dead: list[Delivery] = field(default_factory=list)


class InProcessBus(EventBus):
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._queues: dict[str, _Queue] = {}
        self._cond = threading.Condition()
        for priority in WORK_KEYS:
            self._declare(self.work_queue_name(priority), [], DEFAULT_MAX_DELIVERIES)

    def _declare(self, name: str, bindings: Sequence[str], max_deliveries: int) -> _Queue:
        with self._cond:
            queue = self._queues.get(name)
            if queue is None:
                queue = self._queues[name] = _Queue(name, list(bindings), max_deliveries)
            else:
                queue.bindings.extend(b for b in bindings if b not in queue.bindings)
            return queue

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        with self._cond:
            for message in messages:
                for queue in self._route(message):
                    queue.ready.append(
                        Delivery(
                            body=message.body,
                            routing_key=message.routing_key,
                            message_id=message.message_id,
                            redelivered=False,
                            delivery_count=0,
                            headers=dict(message.headers),
                        )
                    )
            self._cond.notify_all()

    def _route(self, message: OutgoingMessage) -> list[_Queue]:
        if message.exchange == EVENTS_EXCHANGE:
            return [
                q
                for q in self._queues.values()
                if any(topic_matches(b, message.routing_key) for b in q.bindings)
            ]
        return [self._queues[self.work_queue_name(message.routing_key)]]

    def _take(self, queue: _Queue) -> Delivery | None:
        # called with the condition held
        if not queue.ready:
            return None
        queued = queue.ready.popleft()
        # A fresh object per delivery: a handler (or worker) holding an earlier delivery of the
        # same message must not see it change under it.
        count = queued.delivery_count + 1
        delivery = replace(queued, delivery_count=count, redelivered=count > 1, headers=dict(queued.headers))
        queue.unacked += 1
        return delivery

    def _settle(self, queue: _Queue, delivery: Delivery, ok: bool, requeue: bool = True) -> None:
        with self._cond:
            queue.unacked -= 1
            if ok:
                return
            if requeue and delivery.delivery_count < queue.max_deliveries:
                queue.ready.appendleft(delivery)
            else:
                queue.dead.append(delivery)
            self._cond.notify_all()

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
        queue_state = self._declare(self.prefix + queue, bindings, max_deliveries)
        return _InProcessSubscription(self, queue_state, handler, batch_handler, max(1, batch_size))

    def work_client(self) -> WorkQueueClient:
        return _InProcessWorkClient(self)

    def queue_figures(self, queue: str) -> QueueFigures | None:
        with self._cond:
            q = self._queues.get(queue)
            if q is None:
                return None
            return QueueFigures(ready=len(q.ready), unacked=q.unacked, consumers=q.consumers)

    def dead_letters(self, queue: str) -> int:
        with self._cond:
            q = self._queues.get(queue)
            return len(q.dead) if q else 0

    def ping(self) -> bool:
        return True

    def wait_for_work(self, timeout: float) -> None:
        """Block until something is published or `timeout` passes (spares pollers a busy loop)."""
        with self._cond:
            self._cond.wait(timeout)


class _InProcessSubscription(Subscription):
    def __init__(
        self,
        bus: InProcessBus,
        queue: _Queue,
        handler: Handler,
        batch_handler: BatchHandler | None,
        batch_size: int,
    ) -> None:
        self.bus, self.queue, self.handler = bus, queue, handler
        self.batch_handler, self.batch_size = batch_handler, batch_size

    def run(self, stop: StopSignal) -> None:
        with self.bus._cond:
            self.queue.consumers += 1
        try:
            while not stop.is_set():
                with self.bus._cond:
                    deliveries = self._take_batch()
                    if not deliveries:
                        self.bus._cond.wait(0.2)
                        continue
                outcomes = apply_deliveries(self.queue.name, deliveries, self.handler, self.batch_handler)
                # a failed delivery goes back to the head of the queue: the last first, so that
                # several go back in their order
                for delivery, ok in reversed(outcomes):
                    self.bus._settle(self.queue, delivery, ok=ok)
                failed = [delivery.delivery_count for delivery, ok in outcomes if not ok]
                if failed:  # deliver again, bounded, after a pause that grows with the attempts
                    stop.wait(0.05 * max(failed))
        finally:
            with self.bus._cond:
                self.queue.consumers -= 1

    def _take_batch(self) -> list[Delivery]:
        # called with the condition held: whatever is ready, up to a batch (no waiting for more,
        # publishers here are in the same process and append whole batches at once)
        deliveries: list[Delivery] = []
        while len(deliveries) < self.batch_size:
            delivery = self.bus._take(self.queue)
            if delivery is None:
                break
            deliveries.append(delivery)
        return deliveries


class _InProcessWorkClient(WorkQueueClient):
    def __init__(self, bus: InProcessBus) -> None:
        self.bus = bus

    def get(self, priority: str) -> Delivery | None:
        queue = self.bus._queues[self.bus.work_queue_name(priority)]
        with self.bus._cond:
            delivery = self.bus._take(queue)
        if delivery is not None:
            delivery.tag = queue
        return delivery

    def ack(self, delivery: Delivery) -> None:
        self.bus._settle(delivery.tag, delivery, ok=True)  # type: ignore[arg-type]

    def reject(self, delivery: Delivery, requeue: bool) -> None:
        self.bus._settle(delivery.tag, delivery, ok=False, requeue=requeue)  # type: ignore[arg-type]

    def close(self) -> None:
        pass
