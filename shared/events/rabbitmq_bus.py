"""The RabbitMQ adapter of the bus port (py-amqp; connections in shared/events/amqp_link.py).

Broker layout (every name carries `prefix`):
- `events`: durable topic exchange, routing key = event type;
- `work`: durable direct exchange, routing key = priority, bound to the queues `work.<priority>`;
- `dead`: durable direct exchange; a consuming queue `Q` dead-letters with routing key `Q` into the
  durable classic queue `Q.dead`;
- `Q.filter`: a headers exchange per queue with filtered bindings, fed by the events exchange
  (exchange-to-exchange binding on the pattern) and bound to `Q` on the headers it asks for, so
  the broker drops what the consumer would ignore. A binding a consumer no longer wants is
  unbound when its queue is declared (`retired`), since a durable queue keeps its bindings.

Consuming queues are quorum queues: the broker counts deliveries (`x-delivery-count`) and parks a
message after `max_deliveries` of them, so a poison message can neither loop nor vanish. Exclusive
subscriptions cannot be quorum queues; for them the subscription counts deliveries itself.

Connections are not thread-safe, so nothing here shares one between threads: publishers get one
connection per thread, each subscription and worker link opens its own in the thread that uses
it, and the admin connection (figures, dead letters, ping) is only touched under a lock.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from threading import Event as StopSignal
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import amqp
import amqp.exceptions

from .amqp_link import (
    BROKER_ERRORS,
    PUBLISHING_ERRORS,
    Backoff,
    BrokerAddress,
    ConfirmTracker,
    ThreadPublisher,
    amqp_message,
    close_quietly,
    connect,
    publish_and_wait,
    read_pushed,
    thread_name,
    to_delivery,
)
from .bus import (
    DEFAULT_MAX_DELIVERIES,
    EVENTS_EXCHANGE,
    WORK_EXCHANGE,
    WORK_KEYS,
    BusUnavailable,
    DeadLetter,
    Delivery,
    EventBus,
    FilteredBindings,
    OutgoingMessage,
    QueueFigures,
    Subscription,
    SubscriptionSpec,
    TransientFailure,
    WorkerLink,
)
from .delivery_batches import apply_deliveries, transient_delay

log = logging.getLogger(__name__)

DEAD_EXCHANGE = "dead"
# How long the consumer loop waits for I/O before looking at its stop signal again.
POLL_INTERVAL = 0.25
MANAGEMENT_TIMEOUT = 2.0

# Declaring topology that contradicts what exists (other arguments, no permission) will not heal by
# reconnecting: surface it instead of retrying forever.
_CONFIG_ERRORS = (amqp.exceptions.PreconditionFailed, amqp.exceptions.AccessRefused)

T = TypeVar("T")


class TopologyMismatch(RuntimeError):
    """The broker refused our queue/exchange declaration (e.g. different queue arguments)."""


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

    def exchange_of(self, message: OutgoingMessage) -> str:
        return self.prefix + message.exchange

    def work_queue(self, priority: str) -> str:
        return f"{self.prefix}work.{priority}"

    def declare_exchanges(self, channel: amqp.Channel) -> None:
        channel.exchange_declare(self.events, "topic", durable=True, auto_delete=False)
        channel.exchange_declare(self.work, "direct", durable=True, auto_delete=False)
        channel.exchange_declare(self.dead, "direct", durable=True, auto_delete=False)

    def declare_dead_letter_queue(self, channel: amqp.Channel, queue: str) -> None:
        channel.queue_declare(queue + ".dead", durable=True, auto_delete=False)
        channel.queue_bind(queue + ".dead", self.dead, routing_key=queue)

    def declare_work_queue(self, channel: amqp.Channel, priority: str) -> str:
        queue = self.work_queue(priority)
        self.declare_dead_letter_queue(channel, queue)
        arguments = _quorum_arguments(self.dead, queue, DEFAULT_MAX_DELIVERIES)
        channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments)
        channel.queue_bind(queue, self.work, routing_key=priority)
        return queue

    def declare_work(self, channel: amqp.Channel) -> list[str]:
        self.declare_exchanges(channel)
        return [self.declare_work_queue(channel, priority) for priority in WORK_KEYS]

    def declare_subscription(
        self,
        channel: amqp.Channel,
        queue: str,
        bindings: Sequence[str],
        filtered: FilteredBindings,
        max_deliveries: int,
        exclusive: bool,
        retired: Sequence[str] = (),
    ) -> None:
        self.declare_exchanges(channel)
        self.declare_dead_letter_queue(channel, queue)
        if exclusive:
            arguments = _exclusive_arguments(self.dead, queue)
            channel.queue_declare(queue, exclusive=True, auto_delete=True, arguments=arguments)
        else:
            arguments = _quorum_arguments(self.dead, queue, max_deliveries)
            channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments)
        for pattern in retired:  # a no-op where the binding is not there
            channel.queue_unbind(queue, self.events, routing_key=pattern)
        for pattern in bindings:
            channel.queue_bind(queue, self.events, routing_key=pattern)
        for pattern in filtered:
            # a binding of the pattern itself, left by a version that took every such event, would
            # let the events the filter drops through (unbinding a missing binding is a no-op)
            channel.queue_unbind(queue, self.events, routing_key=pattern)
        if filtered:
            # one headers exchange per queue: what it lets through depends on this queue's needs
            gate = queue + ".filter"
            channel.exchange_declare(gate, "headers", durable=not exclusive, auto_delete=exclusive)
            for pattern, headers in filtered.items():
                channel.exchange_bind(gate, self.events, routing_key=pattern)
                channel.queue_bind(queue, gate, arguments={"x-match": "all", **headers})


def _declaring(declare: Callable[[], T]) -> T:
    """Run a declaration, turning a refusal that reconnecting cannot fix into TopologyMismatch."""
    try:
        return declare()
    except _CONFIG_ERRORS as exc:
        raise TopologyMismatch(str(exc)) from exc


# --------------------------------------------------------------------------------------------
# The bus


class RabbitMQBus(EventBus):
    def __init__(self, url: str, prefix: str = "", *, heartbeat: int = 20) -> None:
        self.prefix = prefix
        self._url = url
        self._address = BrokerAddress.from_url(url)
        self._heartbeat = heartbeat
        self._topology = _Topology(prefix)
        self._local = threading.local()
        # close() bumps this; other threads' publishers see it and drop their connection on their
        # next publish (we never close a connection from a thread that does not own it).
        self._generation = 0
        self._admin_lock = threading.Lock()
        self._admin: amqp.Connection | None = None
        self._declared: set[str] = set()

    # ---- connections

    def connect(self, role: str, heartbeat: int | None = None) -> amqp.Connection:
        name = f"taskhub {self.prefix}{role} ({thread_name()})"
        return connect(self._address, name, self._heartbeat if heartbeat is None else heartbeat)

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
            _check_destination(message)
        reused = getattr(self._local, "publisher", None) is not None
        try:
            self._publish_once(messages)
        except PUBLISHING_ERRORS as exc:
            self._drop_publisher()
            if not reused or not _link_error(exc):
                raise _unavailable(exc) from exc
            # a connection that idled may have been closed by the broker meanwhile: one fresh try
            try:
                self._publish_once(messages)
            except PUBLISHING_ERRORS as again:
                self._drop_publisher()
                raise _unavailable(again) from again

    def _publish_once(self, messages: Sequence[OutgoingMessage]) -> None:
        publisher = self._publisher()
        publish_and_wait(publisher.connection, publisher.tracker, messages, self._topology.exchange_of)

    def _publisher(self) -> ThreadPublisher:
        publisher: ThreadPublisher | None = getattr(self._local, "publisher", None)
        if publisher is not None and publisher.generation != self._generation:
            self._drop_publisher()
            publisher = None
        if publisher is None:
            publisher = self._open_publisher()
            self._local.publisher = publisher
        return publisher

    def _open_publisher(self) -> ThreadPublisher:
        # No heartbeats: a publisher may idle for hours between batches, and a connection that
        # died meanwhile shows itself on the next publish, which then reconnects once.
        connection = self.connect("publisher", heartbeat=0)
        try:
            channel = connection.channel()
            # Work messages are mandatory, so their queues must exist before the first publish.
            self._remember(*_declaring(lambda: self._topology.declare_work(channel)))
            tracker = ConfirmTracker(channel)
        except BaseException:
            close_quietly(connection)
            raise
        return ThreadPublisher(connection, tracker, self._generation)

    def _drop_publisher(self) -> None:
        publisher: ThreadPublisher | None = getattr(self._local, "publisher", None)
        self._local.publisher = None
        if publisher is not None:
            close_quietly(publisher.connection)

    # ---- consuming

    def _subscribe(self, spec: SubscriptionSpec) -> Subscription:
        sub = _RabbitSubscription(self, spec)
        if not spec.exclusive:
            # Declare now, so events published before run() starts are kept (as in-process).
            # An exclusive queue belongs to the connection that declares it: run() does that.
            self._declare_early(sub)
        return sub

    def _declare_early(self, sub: _RabbitSubscription) -> None:
        try:
            self._on_admin_channel(sub.declare)
        except BROKER_ERRORS as exc:  # run() declares again, with retries
            log.info("could not declare %s yet: %r", sub.queue, exc)

    def worker_link(
        self, name: str, priorities: Sequence[str], prefetch: int, control_bindings: Sequence[str]
    ) -> WorkerLink:
        from .rabbitmq_worker_link import RabbitWorkerLink

        return RabbitWorkerLink(self, name, list(priorities), prefetch, list(control_bindings))

    # ---- admin: figures, dead letters, ping

    def _on_admin_channel(self, use: Callable[[amqp.Channel], T]) -> T:
        """Run `use` on a fresh channel of the shared admin connection (a channel error such as
        a passive declare's 404 closes the channel, so each call gets its own)."""
        with self._admin_lock:
            for last_try in (False, True):
                channel = self._admin_channel()
                try:
                    return use(channel)
                except (amqp.exceptions.ConnectionError, OSError):
                    # the idle admin connection may have died since its last use: once more,
                    # on a fresh one
                    self._drop_admin()
                    if last_try:
                        raise
                finally:
                    if channel.is_open:
                        close_quietly(channel)
            raise AssertionError("unreachable")

    def _admin_channel(self) -> amqp.Channel:
        # Called with the lock held. The admin connection has no heartbeats (it idles between
        # calls); one failure on the cached connection earns one fresh attempt.
        if self._admin is not None:
            try:
                return self._admin.channel()
            except BROKER_ERRORS as exc:
                log.debug("admin connection unusable: %r", exc)
        self._drop_admin()
        self._admin = self.connect("admin", heartbeat=0)
        return self._admin.channel()

    def _drop_admin(self) -> None:
        close_quietly(self._admin)
        self._admin = None

    def declare_work(self) -> None:
        self._on_admin_channel(
            lambda ch: self._remember(*_declaring(lambda: self._topology.declare_work(ch)))
        )

    def queue_figures(self, queue: str) -> QueueFigures | None:
        try:
            ready, consumers = self._on_admin_channel(lambda ch: _passive_counts(ch, queue))
        except amqp.exceptions.NotFound:
            if queue not in {self.work_queue_name(p) for p in WORK_KEYS}:
                return None
            # work queues exist by definition of the port (the in-process bus makes them upfront)
            try:
                self.declare_work()
                ready, consumers = self._on_admin_channel(lambda ch: _passive_counts(ch, queue))
            except BROKER_ERRORS as exc:
                log.debug("no figures for %s: %r", queue, exc)
                return None
        except BROKER_ERRORS as exc:
            log.debug("no figures for %s: %r", queue, exc)
            return None
        return QueueFigures(ready=ready, unacked=self._unacked(queue), consumers=consumers)

    def _unacked(self, queue: str) -> int | None:
        """AMQP cannot tell unacknowledged counts; the management API can, when configured."""
        base = os.environ.get("RABBITMQ_MANAGEMENT_URL")
        if not base:
            return None
        try:
            import requests  # only needed when the management API is configured

            vhost = quote(self._address.virtual_host, safe="")
            url = f"{base.rstrip('/')}/api/queues/{vhost}/{quote(queue, safe='')}"
            auth = None
            if not urlsplit(base).username:
                auth = (self._address.userid, self._address.password)
            response = requests.get(url, auth=auth, timeout=MANAGEMENT_TIMEOUT)
            response.raise_for_status()
            return int(response.json().get("messages_unacknowledged", 0))
        except (ImportError, OSError, ValueError, TypeError, AttributeError) as exc:
            # Figures are best effort: "unknown" beats failing the caller. (requests' errors are
            # OSErrors; a bad JSON body is a ValueError.)
            log.debug("management API gave no unacked count for %s: %r", queue, exc)
            return None

    def dead_letters(self, queue: str) -> int:
        try:
            return self._on_admin_channel(lambda ch: _passive_counts(ch, queue + ".dead")[0])
        except amqp.exceptions.NotFound:
            return 0
        except BROKER_ERRORS as exc:
            # 0 would claim "nothing parked" when we simply do not know.
            raise BusUnavailable(f"cannot count dead letters of {queue}: {exc!r}") from exc

    def dead_lettered(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        def peek(channel: amqp.Channel) -> list[DeadLetter]:
            # take without acknowledging, then close the channel: the broker puts them all back
            found: list[DeadLetter] = []
            while len(found) < limit:
                message = channel.basic_get(queue + ".dead", no_ack=False)
                if message is None:
                    break
                found.append(_dead_letter(message))
            return found

        try:
            return self._on_admin_channel(peek)
        except amqp.exceptions.NotFound:
            return []
        except BROKER_ERRORS as exc:
            raise BusUnavailable(f"cannot read the dead letters of {queue}: {exc!r}") from exc

    def replay_dead_letters(self, queue: str, message_ids: Sequence[str] | None = None) -> int:
        wanted = set(message_ids) if message_ids is not None else None

        def replay(channel: amqp.Channel) -> int:
            tracker = ConfirmTracker(channel)
            taken: list[tuple[int, amqp.Message]] = []
            while True:
                message = channel.basic_get(queue + ".dead", no_ack=False)
                if message is None:
                    break
                taken.append((message.delivery_info["delivery_tag"], message))
            chosen = [
                (tag, m) for tag, m in taken if wanted is None or m.properties.get("message_id") in wanted
            ]
            for _, message in chosen:
                # straight back to the queue that parked it (the default exchange routes by queue
                # name): only that consumer sees it again
                replayed = amqp_message(_outgoing_of(message))
                channel.basic_publish(replayed, exchange="", routing_key=queue)
            deadline = time.monotonic() + 15
            while tracker.outstanding and time.monotonic() < deadline:
                read_pushed(channel.connection, 1.0)
            if tracker.outstanding or tracker.refused:
                raise BusUnavailable("replayed messages were not confirmed; nothing removed")
            for tag, _ in chosen:
                channel.basic_ack(tag)
            return len(chosen)  # the others go back to the dead-letter queue when the channel closes

        try:
            return self._on_admin_channel(replay)
        except amqp.exceptions.NotFound:
            return 0
        except BROKER_ERRORS as exc:
            raise BusUnavailable(f"cannot replay the dead letters of {queue}: {exc!r}") from exc

    def ping(self) -> bool:
        try:
            return self._on_admin_channel(lambda channel: bool(channel.is_open))
        except Exception as exc:  # noqa: BLE001 - a health check reports, it never raises
            log.debug("ping failed: %r", exc)
            return False

    def close(self) -> None:
        self._generation += 1
        self._drop_publisher()
        with self._admin_lock:
            self._drop_admin()


def _check_destination(message: OutgoingMessage) -> None:
    """A wrong exchange or priority is a bug, not an outage: retrying would not help."""
    if message.exchange not in (EVENTS_EXCHANGE, WORK_EXCHANGE):
        raise ValueError(f"unknown exchange {message.exchange!r}")
    if message.exchange == WORK_EXCHANGE and message.routing_key not in WORK_KEYS:
        raise ValueError(f"unknown priority {message.routing_key!r}")


def _link_error(exc: BaseException) -> bool:
    return not isinstance(exc, BusUnavailable) or "refused" not in str(exc)


def _unavailable(exc: BaseException) -> BusUnavailable:
    if isinstance(exc, BusUnavailable):
        return exc
    return BusUnavailable(f"publish not confirmed: {exc!r}")


def _passive_counts(channel: amqp.Channel, queue: str) -> tuple[int, int]:
    ok = channel.queue_declare(queue, passive=True)
    return int(ok.message_count), int(ok.consumer_count)


def _dead_letter(message: amqp.Message) -> DeadLetter:
    delivery = to_delivery(message)
    deaths = (message.properties.get("application_headers") or {}).get("x-death") or []
    keys = deaths[0].get("routing-keys") if deaths and isinstance(deaths[0], dict) else None
    routing_key = keys[0] if keys else delivery.routing_key
    return DeadLetter(delivery.message_id, str(routing_key), delivery.body, delivery.headers)


def _outgoing_of(message: amqp.Message) -> OutgoingMessage:
    letter = _dead_letter(message)
    return OutgoingMessage(
        EVENTS_EXCHANGE, letter.routing_key, letter.body, letter.message_id or "", letter.headers
    )


# --------------------------------------------------------------------------------------------
# Subscription


class _RabbitSubscription(Subscription):
    def __init__(self, bus: RabbitMQBus, spec: SubscriptionSpec) -> None:
        self.bus, self.queue, self.bindings, self.filtered = (
            bus,
            spec.queue,
            list(spec.bindings),
            spec.filtered,
        )
        self.handler, self.retired = spec.handler, spec.retired
        self.prefetch, self.max_deliveries, self.exclusive = (
            spec.prefetch,
            spec.max_deliveries,
            spec.exclusive,
        )
        self.batch_handler, self.batch_size, self.batch_linger = (
            spec.batch_handler,
            spec.batch_size,
            spec.batch_linger,
        )
        # Classic (exclusive) queues do not count deliveries: count them here, per message.
        self._attempts: dict[str, int] = {}
        # Deliveries received and not yet applied: (attempts key, delivery).
        self._held: list[tuple[str, Delivery]] = []
        # Failed deliveries waiting for their pause before going back: (due, tag, requeue).
        self._returns: list[tuple[float, int, bool]] = []
        # The live connection of run(), for diagnostics and fault-injection tests only: other
        # threads may look at it but never call it.
        self._connection: amqp.Connection | None = None

    def declare(self, channel: amqp.Channel) -> None:
        topology = self.bus._topology
        _declaring(
            lambda: topology.declare_subscription(
                channel,
                self.queue,
                self.bindings,
                self.filtered,
                self.max_deliveries,
                self.exclusive,
                self.retired,
            )
        )
        self.bus._remember(self.queue)

    def run(self, stop: StopSignal) -> None:
        backoff = Backoff()
        while not stop.is_set():
            try:
                self._consume(stop, backoff)
            except BROKER_ERRORS as exc:
                delay = backoff.next_delay()
                log.warning("consumer of %s lost the broker (%r); retry in %.1fs", self.queue, exc, delay)
                stop.wait(delay)

    def _consume(self, stop: StopSignal, backoff: Backoff) -> None:
        connection = self._connection = self.bus.connect(f"consumer {self.queue}")
        try:
            channel = connection.channel()
            self.declare(channel)
            # a batch can only be made of deliveries the broker lets us hold at once
            channel.basic_qos(0, max(self.prefetch, self.batch_size), False)
            channel.basic_consume(self.queue, callback=self._on_message, no_ack=False)
            self._attempts.clear()  # an exclusive queue starts empty on each connection
            self._held.clear()  # the broker gives back what the last connection held
            self._returns.clear()
            backoff.reset()
            transient_failures = 0
            while not stop.is_set():
                read_pushed(connection, self._wait_time())
                self._return_due(channel)
                while self._held and not stop.is_set():
                    self._fill_batch(connection)
                    try:
                        self._apply_held(channel)
                        transient_failures = 0
                    except TransientFailure as exc:
                        # keep everything held (never counted as a failed delivery); the broker
                        # sends nothing more past the prefetch meanwhile
                        transient_failures += 1
                        delay = transient_delay(transient_failures)
                        log.warning("%s: cannot apply now (%s); again in %.1fs", self.queue, exc, delay)
                        self._pause(connection, stop, delay)
                if not channel.is_open:  # e.g. closed for a consumer ack timeout
                    raise amqp.exceptions.RecoverableChannelError(f"channel of {self.queue} closed")
        finally:
            # Unacknowledged deliveries go back to the queue when the connection closes.
            self._connection = None
            close_quietly(connection)

    def _wait_time(self) -> float:
        if not self._returns:
            return POLL_INTERVAL
        return max(0.0, min(POLL_INTERVAL, self._returns[0][0] - time.monotonic()))

    def _pause(self, connection: amqp.Connection, stop: StopSignal, seconds: float) -> None:
        """Wait while keeping the connection alive (heartbeats), without applying anything."""
        until = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < until:
            read_pushed(connection, min(POLL_INTERVAL, until - time.monotonic()))

    def _on_message(self, message: amqp.Message) -> None:
        key = message.properties.get("message_id") or hashlib.sha256(message.body).hexdigest()
        self._held.append((key, to_delivery(message, self._attempts.get(key, 0))))

    def _fill_batch(self, connection: amqp.Connection) -> None:
        """Take in what the broker sends within the linger, up to a batch."""
        deadline = time.monotonic() + self.batch_linger
        while len(self._held) < self.batch_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            read_pushed(connection, left)

    def _apply_held(self, channel: amqp.Channel) -> None:
        held = self._held[: self.batch_size]
        deliveries = [delivery for _, delivery in held]
        outcomes = apply_deliveries(self.queue, deliveries, self.handler, self.batch_handler)
        self._held = self._held[self.batch_size :]
        settled_ok = [delivery for delivery, ok in outcomes if ok]
        if len(settled_ok) == len(outcomes) and not self._returns:
            # nothing unsettled below these tags on this channel: one ack covers them all
            channel.basic_ack(int(deliveries[-1].tag), multiple=True)  # type: ignore[call-overload]
            for key, _ in held:
                self._attempts.pop(key, None)
            return
        for (key, _), (delivery, ok) in zip(held, outcomes, strict=True):
            if ok:
                self._attempts.pop(key, None)
                channel.basic_ack(int(delivery.tag))  # type: ignore[call-overload]
            else:
                self._retry_later(key, delivery)

    def _retry_later(self, key: str, delivery: Delivery) -> None:
        requeue = True
        if self.exclusive:
            # The broker will not park it for us: reject without requeue to dead-letter it.
            self._attempts[key] = delivery.delivery_count
            requeue = delivery.delivery_count < self.max_deliveries
            if not requeue:
                self._attempts.pop(key, None)
        # A short pause before giving it back, so a failing handler does not burn every delivery
        # in a few milliseconds.
        delay = min(0.05 * delivery.delivery_count, 1.0)
        self._returns.append((time.monotonic() + delay, int(delivery.tag), requeue))  # type: ignore[call-overload]
        self._returns.sort()

    def _return_due(self, channel: amqp.Channel) -> None:
        now = time.monotonic()
        while self._returns and self._returns[0][0] <= now:
            _, tag, requeue = self._returns.pop(0)
            channel.basic_reject(tag, requeue=requeue)
