"""Connections to RabbitMQ through py-amqp (the AMQP client Celery and kombu use): opening them,
reading what the broker pushed, and publishing with confirms that are waited for per batch.

Why py-amqp rather than pika's BlockingConnection: pika's blocking channel waits for the confirm
of every message before it sends the next one, which chains one broker round trip (and a quorum
queue's disk write) per message; py-amqp lets a batch go out at once and the confirms come back
together (`basic.ack` with `multiple`). It is also synchronous and small, which fits this code's
one-connection-per-thread model.
"""

from __future__ import annotations

import contextlib
import logging
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import amqp
import amqp.exceptions

from .bus import BusUnavailable, Delivery, OutgoingMessage

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
# How long a publisher waits for the confirms of a batch before calling the broker unavailable.
CONFIRM_TIMEOUT = 15.0
RECONNECT_BASE_DELAY = 0.5
RECONNECT_MAX_DELAY = 30.0

# Everything that means "the broker or the link is not usable right now" (socket.timeout is an
# OSError too: callers that wait with a timeout catch it first).
BROKER_ERRORS: tuple[type[Exception], ...] = (amqp.exceptions.AMQPError, OSError, EOFError)
CLOSING_ERRORS: tuple[type[Exception], ...] = (*BROKER_ERRORS, AttributeError)
PUBLISHING_ERRORS: tuple[type[Exception], ...] = (*BROKER_ERRORS, BusUnavailable)


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    userid: str
    password: str
    virtual_host: str

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        """amqp://user:password@host:port/vhost, the vhost URL-encoded (`%2F` is `/`)."""
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError(f"not an amqp:// URL: {parts.scheme!r}")
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        return cls(
            host=f"{parts.hostname or 'localhost'}:{parts.port or 5672}",
            userid=unquote(parts.username or "guest"),
            password=unquote(parts.password or "guest"),
            virtual_host=vhost,
        )


def connect(address: BrokerAddress, name: str, heartbeat: int) -> amqp.Connection:
    connection = amqp.Connection(
        host=address.host,
        userid=address.userid,
        password=address.password,
        virtual_host=address.virtual_host,
        heartbeat=heartbeat,
        connect_timeout=CONNECT_TIMEOUT,
        # names the connection in the management UI, to tell services and roles apart
        client_properties={"connection_name": name},
    )
    connection.connect()
    return connection


def close_quietly(resource: Any) -> None:
    """Close a connection or channel that may already be dead; errors here carry no news."""
    if resource is None:
        return
    try:
        resource.close()
    except CLOSING_ERRORS as exc:
        log.debug("closing %r failed: %r", resource, exc)
    collect = getattr(resource, "collect", None)
    if collect is not None:
        # a connection whose socket died cannot close politely: drop it anyway
        with contextlib.suppress(Exception):
            collect()


def read_pushed(connection: amqp.Connection, timeout: float) -> None:
    """Dispatch what the broker sent (deliveries, confirms, closes), waiting up to `timeout` for
    the first frame, then taking whatever else is already there without waiting."""
    connection.heartbeat_tick()
    sock = connection.sock
    if sock is None:
        raise amqp.exceptions.RecoverableConnectionError("connection closed")
    if timeout > 0 and not _has_buffered(connection):
        readable, _, _ = select.select([sock], [], [], timeout)
        if not readable:
            return
    while True:
        try:
            connection.drain_events(timeout=0.5)
        except TimeoutError:
            return
        if not _has_buffered(connection) and not select.select([sock], [], [], 0)[0]:
            return


def _has_buffered(connection: amqp.Connection) -> bool:
    transport = connection.transport
    return bool(transport is not None and getattr(transport, "_read_buffer", b""))


def header_text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def to_delivery(message: amqp.Message, seen_before: int = 0) -> Delivery:
    info = message.delivery_info
    properties = message.properties
    raw = properties.get("application_headers") or {}
    # Quorum queues send x-delivery-count = number of earlier deliveries (absent or 0 the first
    # time); classic queues send nothing, so the caller may pass its own count.
    count = max(int(raw.get("x-delivery-count") or 0), seen_before) + 1
    body = message.body
    return Delivery(
        body=body if isinstance(body, bytes) else str(body).encode(),
        routing_key=info.get("routing_key", ""),
        message_id=properties.get("message_id"),
        redelivered=bool(info.get("redelivered")) or count > 1,
        delivery_count=count,
        # broker-owned x- headers (x-death is a nested table) are not the publisher's headers
        headers={k: header_text(v) for k, v in raw.items() if not k.startswith("x-")},
        tag=info.get("delivery_tag"),
    )


def amqp_message(message: OutgoingMessage) -> amqp.Message:
    return amqp.Message(
        message.body,
        content_type="application/json",
        delivery_mode=2,  # persistent
        message_id=message.message_id,
        application_headers=dict(message.headers),
        timestamp=int(time.time()),
    )


class Backoff:
    """Capped exponential backoff with jitter, so reconnecting services do not stampede."""

    def __init__(self, base: float = RECONNECT_BASE_DELAY, cap: float = RECONNECT_MAX_DELAY):
        self.base, self.cap, self.attempt = base, cap, 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class ConfirmTracker:
    """Publisher confirms on one channel, tracked per message so that a batch is sent at once
    and its confirms are awaited (or collected) together.

    Delivery tags count the channel's publishes from 1; an ack or nack may cover every earlier
    tag (`multiple`). A mandatory message that no queue took comes back (`basic.return`) before
    its ack: it counts as refused."""

    def __init__(self, channel: amqp.Channel) -> None:
        self.channel = channel
        self._next_tag = 1
        self._outstanding: dict[int, str] = {}  # delivery tag -> message id
        self._returned: set[str] = set()
        self.confirmed: list[str] = []
        self.refused: list[str] = []
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)

    def send(
        self, messages: Iterable[OutgoingMessage], exchange_of: Callable[[OutgoingMessage], str]
    ) -> None:
        for message in messages:
            self.channel.basic_publish(
                amqp_message(message),
                exchange=exchange_of(message),
                routing_key=message.routing_key,
                # a work message no queue takes is an error, not a silent ack
                mandatory=message.exchange == "work",
            )
            self._outstanding[self._next_tag] = message.message_id
            self._next_tag += 1

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    def take_news(self) -> tuple[list[str], list[str]]:
        confirmed, refused = self.confirmed, self.refused
        self.confirmed, self.refused = [], []
        return confirmed, refused

    def _settled(self, tag: int, multiple: bool) -> list[str]:
        tags = [t for t in self._outstanding if t <= tag] if multiple else [tag]
        return [self._outstanding.pop(t) for t in tags if t in self._outstanding]

    def _on_ack(self, tag: int, multiple: bool) -> None:
        for message_id in self._settled(tag, multiple):
            if message_id in self._returned:
                self._returned.discard(message_id)
                self.refused.append(message_id)
            else:
                self.confirmed.append(message_id)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self.refused.extend(self._settled(tag, multiple))

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: amqp.Message) -> None:
        message_id = message.properties.get("message_id")
        if message_id:
            self._returned.add(message_id)


@dataclass
class ThreadPublisher:
    """One confirming channel per thread that publishes (connections are not thread-safe)."""

    connection: amqp.Connection
    tracker: ConfirmTracker
    generation: int


def publish_and_wait(
    connection: amqp.Connection,
    tracker: ConfirmTracker,
    messages: Sequence[OutgoingMessage],
    exchange_of: Callable[[OutgoingMessage], str],
    timeout: float = CONFIRM_TIMEOUT,
) -> None:
    """Send every message, then wait once for all their confirms. Raises BusUnavailable if any was
    refused or not confirmed in time (callers publish the whole batch again: ids deduplicate)."""
    tracker.take_news()
    tracker.send(messages, exchange_of)
    deadline = time.monotonic() + timeout
    while tracker.outstanding:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BusUnavailable(f"{tracker.outstanding} of {len(messages)} messages not confirmed in time")
        read_pushed(connection, min(left, 1.0))
    _, refused = tracker.take_news()
    if refused:
        raise BusUnavailable(f"the broker refused {len(refused)} of {len(messages)} messages")


def thread_name() -> str:
    return threading.current_thread().name


def is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, socket.timeout | TimeoutError)
