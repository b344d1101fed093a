"""A worker's one connection to RabbitMQ (the WorkerLink port of shared/events/bus.py).

Three channels on one connection, all driven by the worker's loop (never another thread):
- `work`: one consumer per priority queue, each with the prefetch the worker asks for (quorum
  queues do not support a channel-wide prefetch), so the broker pushes work instead of being
  asked. A new prefetch takes new consumers: the broker applies a consumer's prefetch when it is
  made, and what the old ones hold stays held until settled;
- `control`: the worker's private, auto-deleted queue for cancellations and revocations;
- `reports`: the worker's events, published at once with confirms that `poll` collects later, so
  the loop never waits for the broker.

When the connection is lost, `poll` makes a new one (after a backoff) and says so: the broker put
back every delivery that was not settled, and what was not confirmed must be published again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import amqp

from .amqp_link import BROKER_ERRORS, Backoff, ConfirmTracker, close_quietly, read_pushed, to_delivery
from .bus import BusUnavailable, Delivery, LinkNews, OutgoingMessage, WorkerLink

if TYPE_CHECKING:
    from .rabbitmq_bus import RabbitMQBus

log = logging.getLogger(__name__)

CONTROL_MAX_DELIVERIES = 3


class RabbitWorkerLink(WorkerLink):
    def __init__(
        self, bus: RabbitMQBus, name: str, priorities: list[str], prefetch: int, control_bindings: list[str]
    ) -> None:
        self.bus, self.name = bus, name
        self.priorities, self.prefetch, self.control_bindings = priorities, max(0, prefetch), control_bindings
        self._connection: amqp.Connection | None = None
        self._work: amqp.Channel | None = None
        self._control: amqp.Channel | None = None
        self._tracker: ConfirmTracker | None = None
        self._news = LinkNews()
        self._backoff = Backoff()
        self._retry_at = 0.0
        self._ever_connected = False
        self._consumer_tags: list[str] = []

    # ---- connection

    def _ensure(self) -> bool:
        if self._connection is not None:
            return True
        if time.monotonic() < self._retry_at:
            return False
        try:
            self._open()
        except BROKER_ERRORS as exc:
            self._drop()
            delay = self._backoff.next_delay()
            self._retry_at = time.monotonic() + delay
            log.warning("worker link: broker unreachable (%r); again in %.1fs", exc, delay)
            return False
        self._backoff.reset()
        if self._ever_connected:
            self._news.reconnected = True
        self._ever_connected = True
        return True

    def _open(self) -> None:
        topology = self.bus._topology
        connection = self._connection = self.bus.connect(f"worker {self.name}")
        # the channels are known before consuming starts: deliveries may arrive during set-up
        work = self._work = connection.channel()
        self.bus._remember(*topology.declare_work(work))
        if self.prefetch:
            self._consume_work()
        control = self._control = connection.channel()
        queue = self.bus.control_queue_name(self.name)
        topology.declare_subscription(control, queue, self.control_bindings, {}, CONTROL_MAX_DELIVERIES, True)
        control.basic_consume(queue, callback=self._on_control, no_ack=False)
        self._tracker = ConfirmTracker(connection.channel())

    def _consume_work(self) -> None:
        assert self._work is not None
        self._work.basic_qos(0, self.prefetch, False)
        queues = [self.bus._topology.work_queue(priority) for priority in self.priorities]
        self._consumer_tags = [
            self._work.basic_consume(q, callback=self._on_work, no_ack=False) for q in queues
        ]

    def take_work(self, prefetch: int) -> None:
        prefetch = max(prefetch, 0)
        if prefetch == self.prefetch:
            return
        self.prefetch = prefetch
        log.debug("worker link: taking work with a prefetch of %d", prefetch)
        if self._work is None:
            return  # the next connection consumes, or not, as asked
        try:
            for tag in self._consumer_tags:
                self._work.basic_cancel(tag)
            self._consumer_tags = []
            if prefetch:
                self._consume_work()
        except BROKER_ERRORS as exc:
            self._lost(exc)
            self._news.reconnected = True

    def _drop(self) -> None:
        self._consumer_tags = []
        connection, self._connection = self._connection, None
        self._work = self._control = self._tracker = None
        close_quietly(connection)

    def _lost(self, exc: BaseException) -> None:
        log.warning("worker link: connection lost (%r)", exc)
        self._drop()
        self._retry_at = time.monotonic() + self._backoff.next_delay()

    # ---- the port

    def fileno(self) -> int | None:
        if self._connection is None or self._connection.sock is None:
            return None
        return self._connection.sock.fileno()

    def poll(self, timeout: float = 0.0) -> LinkNews:
        if self._ensure():
            assert self._connection is not None
            try:
                read_pushed(self._connection, timeout)
                if self._tracker is not None:
                    confirmed, refused = self._tracker.take_news()
                    self._news.confirmed += confirmed
                    self._news.refused += refused
            except BROKER_ERRORS as exc:
                self._lost(exc)
                self._news.reconnected = True  # what it held is void, whether or not it is back yet
        elif timeout > 0:
            time.sleep(min(timeout, max(0.0, self._retry_at - time.monotonic())))
        news, self._news = self._news, LinkNews()
        return news

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        if not self._ensure() or self._tracker is None:
            self._news.refused += [m.message_id for m in messages]
            return
        try:
            self._tracker.send(messages, self.bus._topology.exchange_of)
        except BROKER_ERRORS as exc:
            self._lost(exc)
            self._news.reconnected = True

    def ack(self, delivery: Delivery) -> None:
        self._settle(delivery, lambda channel, tag: channel.basic_ack(tag))

    def reject(self, delivery: Delivery, requeue: bool) -> None:
        self._settle(delivery, lambda channel, tag: channel.basic_reject(tag, requeue=requeue))

    def _settle(self, delivery: Delivery, settle: Callable[[amqp.Channel, int], object]) -> None:
        channel, tag = delivery.tag if isinstance(delivery.tag, tuple) else (None, None)
        if channel is None or channel is not self._work and channel is not self._control:
            # its connection died and the broker requeued it then: nothing left to settle
            log.info("settling %s dropped: its connection is gone", delivery.message_id)
            return
        try:
            settle(channel, tag)
        except BROKER_ERRORS as exc:
            self._lost(exc)
            self._news.reconnected = True

    def close(self) -> None:
        self._drop()

    # ---- callbacks (run inside poll)

    def _on_work(self, message: amqp.Message) -> None:
        delivery = to_delivery(message)
        delivery.tag = (self._work, message.delivery_info["delivery_tag"])
        self._news.work.append(delivery)

    def _on_control(self, message: amqp.Message) -> None:
        delivery = to_delivery(message)
        delivery.tag = (self._control, message.delivery_info["delivery_tag"])
        self._news.control.append(delivery)


__all__ = ["RabbitWorkerLink", "BusUnavailable"]
