"""The RabbitMQ adapter of the bus port, on pika's BlockingConnection.

Broker layout (every name carries `prefix`):
- `events`: durable topic exchange, routing key = event type;
- `work`: durable direct exchange, routing key = priority, bound to the queues `work.<priority>`;
- `dead`: durable direct exchange; a consuming queue `Q` dead-letters with routing key `Q` into the
  durable classic queue `Q.dead`.

Consuming queues are quorum queues: the broker counts deliveries (`x-delivery-count`) and parks a
message after `max_deliveries` of them, so a poison message can neither loop nor vanish. Exclusive
subscriptions cannot be quorum queues; for them the subscription counts deliveries itself.

pika connections are not thread-safe, so nothing here shares one between threads: publishers get
one connection per thread, each subscription and work client opens its own in the thread that uses
it, and the admin connection (figures, dead letters, ping) is only touched under a lock.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from threading import Event as StopSignal
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from .bus import (
    DEFAULT_MAX_DELIVERIES,
    EVENTS_EXCHANGE,
    WORK_EXCHANGE,
    WORK_KEYS,
    BatchHandler,
    BusUnavailable,
    Delivery,
    EventBus,
    Handler,
    OutgoingMessage,
    QueueFigures,
    Subscription,
    WorkQueueClient,
)
from .delivery_batches import BATCH_WAIT_SECONDS, apply_deliveries

log = logging.getLogger(__name__)

DEAD_EXCHANGE = "dead"
# A broker under a memory or disk alarm blocks publishers; fail (and let the outbox retry) instead
# of hanging the relay forever.
BLOCKED_CONNECTION_TIMEOUT = 30.0
# How long the consumer loop waits for I/O before looking at its stop signal again.
POLL_INTERVAL = 0.25
RECONNECT_BASE_DELAY = 0.5
RECONNECT_MAX_DELAY = 30.0
MANAGEMENT_TIMEOUT = 2.0

# Everything that means "the broker or the link is not usable right now".
# (A broker too slow to finish the handshake raises pika's connection-workflow errors, which are
# not AMQPErrors.)
_BROKER_ERRORS = (pika.exceptions.AMQPError, OSError, AMQPConnectorException)
# Declaring topology that contradicts what exists (other arguments, no permission) will not heal by
# reconnecting: surface it instead of retrying forever.
_CONFIG_REPLY_CODES = frozenset({403, 406})
_NOT_FOUND = 404

T = TypeVar("T")


class TopologyMismatch(RuntimeError):
    """The broker refused our queue/exchange declaration (e.g. different queue arguments)."""


class _ChannelLost(Exception):
    """The consumer's channel was closed by the broker while the connection stayed up."""


# --------------------------------------------------------------------------------------------
# Topology


def _quorum_arguments(dead_exchange: str, queue: str, max_deliveries: int) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        # On 3.10 the limit counts returns: a message is parked once it has been delivered
        # limit + 1 times, hence max_deliveries - 1.
        "x-delivery-limit": max_deliveries - 1,
        "x-dead-letter-exchange": dead_exchange,
        "x-dead-letter-routing-key": queue,
        # The default (at-most-once) dead-lettering may drop a message if the DLQ is unavailable;
        # at-least-once needs reject-publish overflow.
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def _exclusive_arguments(dead_exchange: str, queue: str) -> dict[str, Any]:
    return {"x-dead-letter-exchange": dead_exchange, "x-dead-letter-routing-key": queue}


@dataclass(frozen=True)
class _Topology:
    prefix: str

    @property
    def events(self) -> str:
        return self.prefix + EVENTS_EXCHANGE

    @property
    def work(self) -> str:
        return self.prefix + WORK_EXCHANGE

    @property
    def dead(self) -> str:
        return self.prefix + DEAD_EXCHANGE

    def work_queue(self, priority: str) -> str:
        return f"{self.prefix}work.{priority}"

    def declare_exchanges(self, channel: BlockingChannel) -> None:
        channel.exchange_declare(self.events, "topic", durable=True)
        channel.exchange_declare(self.work, "direct", durable=True)
        channel.exchange_declare(self.dead, "direct", durable=True)

    def declare_dead_letter_queue(self, channel: BlockingChannel, queue: str) -> None:
        channel.queue_declare(queue + ".dead", durable=True)
        channel.queue_bind(queue + ".dead", self.dead, routing_key=queue)

    def declare_work_queue(self, channel: BlockingChannel, priority: str) -> str:
        queue = self.work_queue(priority)
        self.declare_dead_letter_queue(channel, queue)
        arguments = _quorum_arguments(self.dead, queue, DEFAULT_MAX_DELIVERIES)
        channel.queue_declare(queue, durable=True, arguments=arguments)
        channel.queue_bind(queue, self.work, routing_key=priority)
        return queue

    def declare_work(self, channel: BlockingChannel) -> list[str]:
        self.declare_exchanges(channel)
        return [self.declare_work_queue(channel, priority) for priority in WORK_KEYS]

    def declare_subscription(
        self,
        channel: BlockingChannel,
        queue: str,
        bindings: Sequence[str],
        max_deliveries: int,
        exclusive: bool,
    ) -> None:
        self.declare_exchanges(channel)
        self.declare_dead_letter_queue(channel, queue)
        if exclusive:
            arguments = _exclusive_arguments(self.dead, queue)
            channel.queue_declare(queue, exclusive=True, auto_delete=True, arguments=arguments)
        else:
            arguments = _quorum_arguments(self.dead, queue, max_deliveries)
            channel.queue_declare(queue, durable=True, arguments=arguments)
        for pattern in bindings:
            channel.queue_bind(queue, self.events, routing_key=pattern)


def _declaring(declare: Callable[[], T]) -> T:
    """Run a declaration, turning a refusal that reconnecting cannot fix into TopologyMismatch."""
    try:
        return declare()
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code in _CONFIG_REPLY_CODES:
            raise TopologyMismatch(f"{exc.reply_code} {exc.reply_text}") from exc
        raise


# --------------------------------------------------------------------------------------------
# Small helpers


def _close_quietly(resource: BlockingConnection | BlockingChannel | None) -> None:
    """Close a connection or channel that may already be dead; errors here carry no news."""
    if resource is None or not resource.is_open:
        return
    try:
        resource.close()
    except _BROKER_ERRORS as exc:
        log.debug("closing %r failed: %r", resource, exc)


def _is_alive(connection: BlockingConnection) -> bool:
    """Let pika read what the broker sent (a close, EOF after a missed heartbeat) without waiting,
    so a connection that died while idle is replaced before we use it rather than after."""
    if not connection.is_open:
        return False
    try:
        connection.process_data_events(time_limit=0)
    except _BROKER_ERRORS:
        return False
    return connection.is_open


def _header_text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _to_delivery(
    method: Any, properties: pika.BasicProperties, body: bytes, seen_before: int = 0
) -> Delivery:
    raw = properties.headers or {}
    # Quorum queues send x-delivery-count = number of earlier deliveries (absent or 0 the first
    # time); classic queues send nothing, so the caller may pass its own count.
    count = max(int(raw.get("x-delivery-count") or 0), seen_before) + 1
    return Delivery(
        body=body,
        routing_key=method.routing_key,
        message_id=properties.message_id,
        redelivered=bool(method.redelivered) or count > 1,
        delivery_count=count,
        # Broker-owned x- headers (x-death is a nested table) are not the publisher's headers.
        headers={k: _header_text(v) for k, v in raw.items() if not k.startswith("x-")},
    )


class _Backoff:
    """Capped exponential backoff with jitter, so reconnecting services do not stampede."""

    def __init__(self, base: float = RECONNECT_BASE_DELAY, cap: float = RECONNECT_MAX_DELAY):
        self.base, self.cap, self.attempt = base, cap, 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class _Publisher:
    connection: BlockingConnection
    channel: BlockingChannel
    generation: int


# --------------------------------------------------------------------------------------------
# The bus


class RabbitMQBus(EventBus):
    def __init__(self, url: str, prefix: str = "", *, heartbeat: int = 20) -> None:
        self.prefix = prefix
        self._url = url
        self._heartbeat = heartbeat
        self._topology = _Topology(prefix)
        self._local = threading.local()
        # close() bumps this; other threads' publishers see it and drop their connection on their
        # next publish (we never close a connection from a thread that does not own it).
        self._generation = 0
        self._admin_lock = threading.Lock()
        self._admin: BlockingConnection | None = None
        self._work_clients: weakref.WeakSet[_RabbitWorkClient] = weakref.WeakSet()
        self._declared: set[str] = set()

    # ---- connections

    def _connect(self, role: str) -> BlockingConnection:
        params = pika.URLParameters(self._url)
        params.heartbeat = self._heartbeat
        if params.blocked_connection_timeout is None:
            params.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT
        # Names the connection in the management UI, to tell services and roles apart.
        thread = threading.current_thread().name
        params.client_properties = {"connection_name": f"taskhub {self.prefix}{role} ({thread})"}
        return BlockingConnection(params)

    def declared_queues(self) -> set[str]:
        """Queue names this object declared (dead-letter queues included), for cleanup tools."""
        return set(self._declared)

    def _remember(self, *queues: str) -> None:
        for queue in queues:
            self._declared.update((queue, queue + ".dead"))

    # ---- publishing

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        for message in messages:
            self._check_destination(message)
        publisher = self._publisher()
        try:
            for message in messages:
                self._publish_one(publisher.channel, message)
        except _BROKER_ERRORS as exc:
            # Nack, unroutable, lost link: the connection state is unknown, start afresh next time.
            self._drop_publisher()
            raise BusUnavailable(f"publish not confirmed: {exc!r}") from exc

    def _check_destination(self, message: OutgoingMessage) -> None:
        """A wrong exchange or priority is a bug, not an outage: retrying would not help."""
        if message.exchange not in (EVENTS_EXCHANGE, WORK_EXCHANGE):
            raise ValueError(f"unknown exchange {message.exchange!r}")
        if message.exchange == WORK_EXCHANGE and message.routing_key not in WORK_KEYS:
            raise ValueError(f"unknown priority {message.routing_key!r}")

    def _publish_one(self, channel: BlockingChannel, message: OutgoingMessage) -> None:
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message.message_id,
            headers=dict(message.headers),
            timestamp=int(time.time()),
        )
        # With confirms on, pika blocks until the broker acks and raises on nack; `mandatory`
        # turns "no work queue took it" into UnroutableError instead of a silent ack.
        channel.basic_publish(
            exchange=self.prefix + message.exchange,
            routing_key=message.routing_key,
            body=message.body,
            properties=properties,
            mandatory=message.exchange == WORK_EXCHANGE,
        )

    def _publisher(self) -> _Publisher:
        publisher: _Publisher | None = getattr(self._local, "publisher", None)
        if publisher is not None:
            stale = publisher.generation != self._generation
            if stale or not (publisher.channel.is_open and _is_alive(publisher.connection)):
                self._drop_publisher()
                publisher = None
        if publisher is None:
            try:
                publisher = self._open_publisher()
            except _BROKER_ERRORS as exc:
                raise BusUnavailable(f"cannot connect to the broker: {exc!r}") from exc
            self._local.publisher = publisher
        return publisher

    def _open_publisher(self) -> _Publisher:
        connection = self._connect("publisher")
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            # Work messages are mandatory, so their queues must exist before the first publish.
            self._remember(*_declaring(lambda: self._topology.declare_work(channel)))
        except BaseException:
            _close_quietly(connection)
            raise
        return _Publisher(connection, channel, self._generation)

    def _drop_publisher(self) -> None:
        publisher: _Publisher | None = getattr(self._local, "publisher", None)
        self._local.publisher = None
        if publisher is not None:
            _close_quietly(publisher.connection)

    # ---- consuming

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
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        sub = _RabbitSubscription(
            self, self.prefix + queue, list(bindings), handler, prefetch, max_deliveries, exclusive
        )
        sub.batch_handler, sub.batch_size = batch_handler, max(1, batch_size)
        if not exclusive:
            # Declare now, so events published before run() starts are kept (as in-process).
            # An exclusive queue belongs to the connection that declares it: run() does that.
            self._declare_early(sub)
        return sub

    def _declare_early(self, sub: _RabbitSubscription) -> None:
        try:
            self._on_admin_channel(sub.declare)
        except _BROKER_ERRORS as exc:  # run() declares again, with retries
            log.info("could not declare %s yet: %r", sub.queue, exc)

    def work_client(self) -> WorkQueueClient:
        client = _RabbitWorkClient(self)
        self._work_clients.add(client)
        return client

    # ---- admin: figures, dead letters, ping

    def _on_admin_channel(self, use: Callable[[BlockingChannel], T]) -> T:
        """Run `use` on a fresh channel of the shared admin connection (a channel error such as
        a passive declare's 404 closes the channel, so each call gets its own)."""
        with self._admin_lock:
            channel = self._admin_channel()
            try:
                return use(channel)
            except pika.exceptions.AMQPConnectionError:
                self._drop_admin()
                raise
            finally:
                _close_quietly(channel)

    def _admin_channel(self) -> BlockingChannel:
        # Called with the lock held. An idle admin connection misses heartbeats and gets closed
        # by the broker, so one failure on the cached connection earns one fresh attempt.
        if self._admin is not None and _is_alive(self._admin):
            try:
                return self._admin.channel()
            except _BROKER_ERRORS as exc:
                log.debug("admin connection unusable: %r", exc)
        self._drop_admin()
        self._admin = self._connect("admin")
        return self._admin.channel()

    def _drop_admin(self) -> None:
        _close_quietly(self._admin)
        self._admin = None

    def queue_figures(self, queue: str) -> QueueFigures | None:
        try:
            ready, consumers = self._on_admin_channel(partial(self._passive_counts, queue))
        except _BROKER_ERRORS as exc:
            log.debug("no figures for %s: %r", queue, exc)
            return None
        return QueueFigures(ready=ready, unacked=self._unacked(queue), consumers=consumers)

    def _passive_counts(self, queue: str, channel: BlockingChannel) -> tuple[int, int]:
        # Work queues exist by definition of the port (the in-process bus makes them upfront).
        if queue in {self.work_queue_name(p) for p in WORK_KEYS}:
            self._remember(*_declaring(lambda: self._topology.declare_work(channel)))
        ok = channel.queue_declare(queue, passive=True)
        return ok.method.message_count, ok.method.consumer_count

    def _unacked(self, queue: str) -> int | None:
        """AMQP cannot tell unacknowledged counts; the management API can, when configured."""
        base = os.environ.get("RABBITMQ_MANAGEMENT_URL")
        if not base:
            return None
        try:
            import requests  # only needed when the management API is configured

            params = pika.URLParameters(self._url)
            vhost = quote(params.virtual_host, safe="")
            url = f"{base.rstrip('/')}/api/queues/{vhost}/{quote(queue, safe='')}"
            auth = None
            if not urlsplit(base).username:
                auth = (params.credentials.username, params.credentials.password)
            response = requests.get(url, auth=auth, timeout=MANAGEMENT_TIMEOUT)
            response.raise_for_status()
            return int(response.json().get("messages_unacknowledged", 0))
        except (ImportError, OSError, ValueError, TypeError, AttributeError) as exc:
            # Figures are best effort: "unknown" beats failing the caller. (requests' errors are
            # OSErrors; a bad JSON body is a ValueError.)
            log.debug("management API gave no unacked count for %s: %r", queue, exc)
            return None

    def dead_letters(self, queue: str) -> int:
        def count(channel: BlockingChannel) -> int:
            return channel.queue_declare(queue + ".dead", passive=True).method.message_count

        try:
            return self._on_admin_channel(count)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == _NOT_FOUND:
                return 0
            raise BusUnavailable(f"cannot count dead letters of {queue}: {exc!r}") from exc
        except _BROKER_ERRORS as exc:
            # 0 would claim "nothing parked" when we simply do not know.
            raise BusUnavailable(f"cannot count dead letters of {queue}: {exc!r}") from exc

    def ping(self) -> bool:
        try:
            return self._on_admin_channel(lambda channel: channel.is_open)
        except Exception as exc:  # noqa: BLE001 - a health check reports, it never raises
            log.debug("ping failed: %r", exc)
            return False

    def close(self) -> None:
        self._generation += 1
        self._drop_publisher()
        current = threading.current_thread()
        for client in list(self._work_clients):
            if client.owner is current:
                client.close()
        with self._admin_lock:
            self._drop_admin()


# --------------------------------------------------------------------------------------------
# Subscription


class _RabbitSubscription(Subscription):
    def __init__(
        self,
        bus: RabbitMQBus,
        queue: str,
        bindings: list[str],
        handler: Handler,
        prefetch: int,
        max_deliveries: int,
        exclusive: bool,
    ) -> None:
        self.bus, self.queue, self.bindings, self.handler = bus, queue, bindings, handler
        self.prefetch, self.max_deliveries, self.exclusive = prefetch, max_deliveries, exclusive
        self.batch_handler: BatchHandler | None = None
        self.batch_size = 1
        # Classic (exclusive) queues do not count deliveries: count them here, per message.
        self._attempts: dict[str, int] = {}
        # Deliveries received and not yet applied: (delivery tag, attempts key, delivery).
        self._held: list[tuple[int, str, Delivery]] = []
        # The live connection of run(), for diagnostics and fault-injection tests only: other
        # threads may look at it but never call it.
        self._connection: BlockingConnection | None = None

    def declare(self, channel: BlockingChannel) -> None:
        topology = self.bus._topology
        _declaring(
            lambda: topology.declare_subscription(
                channel, self.queue, self.bindings, self.max_deliveries, self.exclusive
            )
        )
        self.bus._remember(self.queue)

    def run(self, stop: StopSignal) -> None:
        backoff = _Backoff()
        while not stop.is_set():
            try:
                self._consume(stop, backoff)
            except (*_BROKER_ERRORS, _ChannelLost) as exc:
                delay = backoff.next_delay()
                log.warning("consumer of %s lost the broker (%r); retry in %.1fs", self.queue, exc, delay)
                stop.wait(delay)

    def _consume(self, stop: StopSignal, backoff: _Backoff) -> None:
        connection = self._connection = self.bus._connect(f"consumer {self.queue}")
        try:
            channel = connection.channel()
            self.declare(channel)
            # a batch can only be made of deliveries the broker lets us hold at once
            channel.basic_qos(prefetch_count=max(self.prefetch, self.batch_size))
            channel.basic_consume(self.queue, self._on_message, auto_ack=False)
            self._attempts.clear()  # an exclusive queue starts empty on each connection
            self._held.clear()  # the broker gives back what the last connection held
            backoff.reset()
            while not stop.is_set():
                connection.process_data_events(time_limit=POLL_INTERVAL)
                while self._held and not stop.is_set():
                    self._fill_batch(connection)
                    self._apply_held(connection, channel)
                if not channel.is_open:  # e.g. closed for a consumer ack timeout
                    raise _ChannelLost(f"channel of {self.queue} closed")
        finally:
            # Unacknowledged deliveries go back to the queue when the connection closes.
            self._connection = None
            _close_quietly(connection)

    def _on_message(
        self,
        channel: BlockingChannel,
        method: Any,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        key = properties.message_id or hashlib.sha256(body).hexdigest()
        delivery = _to_delivery(method, properties, body, self._attempts.get(key, 0))
        self._held.append((method.delivery_tag, key, delivery))

    def _fill_batch(self, connection: BlockingConnection) -> None:
        """Take in what the broker has already sent, waiting a few ms at most, up to a batch."""
        deadline = time.monotonic() + BATCH_WAIT_SECONDS
        while len(self._held) < self.batch_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            connection.process_data_events(time_limit=left)

    def _apply_held(self, connection: BlockingConnection, channel: BlockingChannel) -> None:
        held, self._held = self._held[: self.batch_size], self._held[self.batch_size :]
        deliveries = [delivery for _, _, delivery in held]
        outcomes = apply_deliveries(self.queue, deliveries, self.handler, self.batch_handler)
        for (tag, key, _), (delivery, ok) in zip(held, outcomes, strict=True):
            if ok:
                # one ack each, not `multiple`: an earlier failed delivery may still be waiting
                # for its delayed nack on this channel, and must not be acknowledged with these
                self._attempts.pop(key, None)
                channel.basic_ack(tag)
            else:
                self._retry_later(connection, channel, tag, key, delivery)

    def _retry_later(
        self,
        connection: BlockingConnection,
        channel: BlockingChannel,
        tag: int,
        key: str,
        delivery: Delivery,
    ) -> None:
        requeue = True
        if self.exclusive:
            # The broker will not park it for us: reject without requeue to dead-letter it.
            self._attempts[key] = delivery.delivery_count
            requeue = delivery.delivery_count < self.max_deliveries
            if not requeue:
                self._attempts.pop(key, None)
        # A short pause before giving it back (as the in-process bus does), so a transient error
        # does not burn every delivery in a few milliseconds. call_later keeps the loop responsive.
        delay = min(0.05 * delivery.delivery_count, 1.0)
        connection.call_later(delay, partial(_nack, channel, tag, requeue))


def _nack(channel: BlockingChannel, tag: int, requeue: bool) -> None:
    # A tag from a closed channel cannot be nacked; the broker already requeued that delivery.
    if channel.is_open:
        channel.basic_nack(tag, requeue=requeue)


# --------------------------------------------------------------------------------------------
# Work queues


@dataclass(frozen=True)
class _Tag:
    channel: BlockingChannel
    delivery_tag: int


class _RabbitWorkClient(WorkQueueClient):
    """basic.get access to the work queues on a connection of its own, for one thread. The thread
    must call in (get/ack) more often than twice the heartbeat, or the broker drops the
    connection and requeues what it holds."""

    def __init__(self, bus: RabbitMQBus) -> None:
        self.bus = bus
        self.owner: threading.Thread | None = None
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def get(self, priority: str) -> Delivery | None:
        if priority not in WORK_KEYS:
            raise ValueError(f"unknown priority {priority!r}")
        try:
            channel = self._ensure_channel()
            method, properties, body = channel.basic_get(self.bus.work_queue_name(priority), auto_ack=False)
        except _BROKER_ERRORS as exc:
            self.close()
            raise BusUnavailable(f"cannot get from {priority}: {exc!r}") from exc
        if method is None:
            return None
        delivery = _to_delivery(method, properties, body)
        delivery.tag = _Tag(channel, method.delivery_tag)
        return delivery

    def _ensure_channel(self) -> BlockingChannel:
        channel = self._usable_channel()
        if channel is not None:
            return channel
        self.close()
        connection = self.bus._connect("work client")
        self._connection, self.owner = connection, threading.current_thread()
        channel = connection.channel()
        self.bus._remember(*_declaring(lambda: self.bus._topology.declare_work(channel)))
        self._channel = channel
        return channel

    def _usable_channel(self) -> BlockingChannel | None:
        if self._channel is None or self._connection is None or not self._channel.is_open:
            return None
        return self._channel if _is_alive(self._connection) else None

    def ack(self, delivery: Delivery) -> None:
        self._settle(delivery, lambda ch, tag: ch.basic_ack(tag), "ack")

    def reject(self, delivery: Delivery, requeue: bool) -> None:
        self._settle(delivery, lambda ch, tag: ch.basic_reject(tag, requeue=requeue), "reject")

    def _settle(self, delivery: Delivery, settle: Callable[[BlockingChannel, int], None], what: str) -> None:
        tag = delivery.tag
        if not isinstance(tag, _Tag):
            raise TypeError("delivery did not come from a RabbitMQ work client")
        if not tag.channel.is_open or tag.channel is not self._channel:
            # Its channel died, and the broker requeued the message then: nothing left to settle.
            log.warning("%s of %s dropped: its channel is gone", what, delivery.message_id)
            return
        try:
            settle(tag.channel, tag.delivery_tag)
        except _BROKER_ERRORS as exc:
            log.warning("%s of %s failed (%r); broker will redeliver", what, delivery.message_id, exc)
            self.close()

    def close(self) -> None:
        _close_quietly(self._connection)
        self._connection = self._channel = None
