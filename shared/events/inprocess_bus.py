"""The in-process adapter of the bus port, for the embedded mode (`make run`) and unit tests.

It keeps RabbitMQ's semantics that the code relies on: topic routing to bound queues (filtered by
headers where asked), delivery until acknowledged, redelivery after a handler error,
dead-lettering after `max_deliveries`, work pushed to workers within a prefetch, publishes
confirmed. Nothing survives the process, which is fine for a single process whose outbox rows
(in SQLite) are the durable copy.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from threading import Event as StopSignal

from .bus import (
    DEFAULT_MAX_DELIVERIES,
    EVENTS_EXCHANGE,
    WORK_KEYS,
    DeadLetter,
    Delivery,
    EventBus,
    FilteredBindings,
    LinkNews,
    OutgoingMessage,
    QueueFigures,
    Subscription,
    SubscriptionSpec,
    TransientFailure,
    WorkerLink,
)
from .delivery_batches import apply_deliveries, transient_delay


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: `*` is one word, `#` is zero or more words."""
    parts = []
    for word in pattern.split("."):
        parts.append({"*": r"[^.]+", "#": r".*"}.get(word, re.escape(word)))
    regex = r"\.".join(parts).replace(r"\..*", r"(\..*)?").replace(r".*\.", r"(.*\.)?")
    return re.fullmatch(regex, key) is not None


def _headers_match(wanted: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    return all(headers.get(k) == v for k, v in wanted.items())


@dataclass
class _Queue:
    name: str
    bindings: list[str]
    max_deliveries: int
    filtered: dict[str, dict[str, str]] = field(default_factory=dict)
    ready: deque[Delivery] = field(default_factory=deque)
    unacked: int = 0
    consumers: int = 0
    dead: list[Delivery] = field(default_factory=list)
    # worker links consuming this queue wake up through these pipes
    wake: list[int] = field(default_factory=list)

    def takes(self, message: OutgoingMessage) -> bool:
        if any(topic_matches(b, message.routing_key) for b in self.bindings):
            return True
        return any(
            topic_matches(pattern, message.routing_key) and _headers_match(headers, message.headers)
            for pattern, headers in self.filtered.items()
        )


class InProcessBus(EventBus):
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._queues: dict[str, _Queue] = {}
        self._cond = threading.Condition()
        for priority in WORK_KEYS:
            self._declare(self.work_queue_name(priority), [], {}, DEFAULT_MAX_DELIVERIES)

    def _declare(
        self,
        name: str,
        bindings: Sequence[str],
        filtered: FilteredBindings,
        max_deliveries: int,
        retired: Sequence[str] = (),
    ) -> _Queue:
        with self._cond:
            queue = self._queues.get(name)
            if queue is None:
                queue = self._queues[name] = _Queue(name, list(bindings), max_deliveries)
            else:
                queue.bindings[:] = [b for b in queue.bindings if b not in retired]
                queue.bindings.extend(b for b in bindings if b not in queue.bindings)
            queue.filtered.update({k: dict(v) for k, v in filtered.items()})
            return queue

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        woken: set[int] = set()
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
                    woken.update(queue.wake)
            self._cond.notify_all()
        for fd in woken:
            _nudge(fd)

    def _route(self, message: OutgoingMessage) -> list[_Queue]:
        if message.exchange == EVENTS_EXCHANGE:
            return [q for q in self._queues.values() if q.takes(message)]
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
            woken = list(queue.wake)
        for fd in woken:
            _nudge(fd)

    def _subscribe(self, spec: SubscriptionSpec) -> Subscription:
        # in one process, publishers append whole batches at once: nothing to linger for
        queue_state = self._declare(
            spec.queue, spec.bindings, spec.filtered, spec.max_deliveries, spec.retired
        )
        return _InProcessSubscription(self, queue_state, spec)

    def worker_link(
        self, name: str, priorities: Sequence[str], prefetch: int, control_bindings: Sequence[str]
    ) -> WorkerLink:
        control = self._declare(self.control_queue_name(name), control_bindings, {}, 3)
        work = [self._queues[self.work_queue_name(p)] for p in priorities]
        return _InProcessWorkerLink(self, work, control, max(1, prefetch))

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

    def dead_lettered(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        with self._cond:
            q = self._queues.get(queue)
            parked = list(q.dead[:limit]) if q else []
        return [DeadLetter(d.message_id, d.routing_key, d.body, dict(d.headers)) for d in parked]

    def replay_dead_letters(self, queue: str, message_ids: Sequence[str] | None = None) -> int:
        wanted = set(message_ids) if message_ids is not None else None
        with self._cond:
            q = self._queues.get(queue)
            if q is None:
                return 0
            chosen = [d for d in q.dead if wanted is None or d.message_id in wanted]
            q.dead = [d for d in q.dead if d not in chosen]
            q.ready.extend(replace(d, delivery_count=0, redelivered=False) for d in chosen)
            self._cond.notify_all()
        return len(chosen)

    def ping(self) -> bool:
        return True


class _InProcessSubscription(Subscription):
    def __init__(self, bus: InProcessBus, queue: _Queue, spec: SubscriptionSpec) -> None:
        self.bus, self.queue, self.handler = bus, queue, spec.handler
        self.batch_handler, self.batch_size = spec.batch_handler, spec.batch_size

    def run(self, stop: StopSignal) -> None:
        with self.bus._cond:
            self.queue.consumers += 1
        transient_failures = 0
        try:
            while not stop.is_set():
                with self.bus._cond:
                    deliveries = self._take_batch()
                    if not deliveries:
                        self.bus._cond.wait(1.0)
                        continue
                try:
                    outcomes = apply_deliveries(self.queue.name, deliveries, self.handler, self.batch_handler)
                except TransientFailure:
                    # give them back untouched (not counted as deliveries) and wait
                    with self.bus._cond:
                        self.queue.unacked -= len(deliveries)
                        for delivery in reversed(deliveries):
                            self.queue.ready.appendleft(
                                replace(delivery, delivery_count=delivery.delivery_count - 1)
                            )
                    transient_failures += 1
                    stop.wait(transient_delay(transient_failures))
                    continue
                transient_failures = 0
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


def _nudge(fd: int) -> None:
    # a full pipe means the reader will look anyway; a closed one, that nobody listens
    with contextlib.suppress(OSError):
        os.write(fd, b"\0")


class _InProcessWorkerLink(WorkerLink):
    """Pushes work within the prefetch, like RabbitMQ; a pipe tells the worker's loop to look."""

    def __init__(self, bus: InProcessBus, work: list[_Queue], control: _Queue, prefetch: int) -> None:
        self.bus, self.work, self.control, self.prefetch = bus, work, control, prefetch
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._held: dict[str, int] = {q.name: 0 for q in work}
        self._confirmed: list[str] = []
        with bus._cond:
            for queue in (*work, control):
                queue.wake.append(self._write)
                queue.consumers += 1
        self._closed = False

    def fileno(self) -> int | None:
        return self._read

    def poll(self, timeout: float = 0.0) -> LinkNews:
        news = self._take()
        if not (news.work or news.control or news.confirmed) and timeout > 0:
            import select

            select.select([self._read], [], [], timeout)
            news = self._take()
        return news

    def _take(self) -> LinkNews:
        try:
            while os.read(self._read, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        news = LinkNews(confirmed=self._confirmed)
        self._confirmed = []
        with self.bus._cond:
            for queue in self.work:
                while self._held[queue.name] < self.prefetch:
                    delivery = self.bus._take(queue)
                    if delivery is None:
                        break
                    delivery.tag = queue
                    self._held[queue.name] += 1
                    news.work.append(delivery)
            while (delivery := self.bus._take(self.control)) is not None:
                delivery.tag = self.control
                news.control.append(delivery)
        return news

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        self.bus.publish(messages)
        self._confirmed.extend(m.message_id for m in messages)
        _nudge(self._write)

    def take_work(self, prefetch: int) -> None:
        self.prefetch = max(prefetch, 0)
        _nudge(self._write)

    def ack(self, delivery: Delivery) -> None:
        self._settle(delivery, ok=True, requeue=False)

    def reject(self, delivery: Delivery, requeue: bool) -> None:
        self._settle(delivery, ok=False, requeue=requeue)

    def _settle(self, delivery: Delivery, ok: bool, requeue: bool) -> None:
        queue = delivery.tag
        if not isinstance(queue, _Queue):
            raise TypeError("delivery did not come from this link")
        if queue.name in self._held:
            self._held[queue.name] -= 1
        self.bus._settle(queue, delivery, ok=ok, requeue=requeue)
        if queue.name in self._held:
            _nudge(self._write)  # room in the prefetch: more may be taken

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self.bus._cond:
            for queue in (*self.work, self.control):
                if self._write in queue.wake:
                    queue.wake.remove(self._write)
                queue.consumers -= 1
        os.close(self._read)
        os.close(self._write)
