"""`python -m bench.queues [--messages N] [--batch B] [--prefetch P] [--size BYTES] [--repeats R] [--quick]`:
RabbitMQ's queue types side by side on this broker, through pika, as the platform uses them:
persistent messages published with publisher confirms, and consumed with a prefetch and an ack
per message. For a quorum queue and a durable classic queue (and the classic queue's version 2
storage, new in 3.10), four phases, each on an empty queue but the consume:

- publish, one confirm at a time: publish one, wait for its confirm (as pika's blocking channel
  does), on N/10 messages;
- publish, confirms per batch: publish B, then wait until all B are confirmed;
- consume the backlog: the N messages just published, prefetch P, one ack per message;
- both at once: a publisher (batches of B) and a consumer in two processes, N messages through.

Each phase prints messages per second, the broker's CPU (beam.smp, every thread) per message and
the client's (pika in Python: this process and its consumer process),
the median of `--repeats` runs (the queue types take turns, so a busy moment hits one run, not
one type). Not part of `make bench`: it measures the broker, not the platform. Queues are named
`benchq<pid>.*` and deleted afterwards. The broker serves the whole machine: run it quiet."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika
import psutil
from pika.adapters.select_connection import SelectConnection

from .topology import AMQP_URL

KINDS: dict[str, dict[str, Any]] = {
    "quorum": {"x-queue-type": "quorum"},
    "classic": {},
    "classic v2": {"x-queue-version": 2},
}
PERSISTENT = pika.BasicProperties(delivery_mode=2, content_type="application/json")


def _broker() -> psutil.Process:
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "beam.smp":
            return process
    raise SystemExit("no beam.smp on this machine: the broker's CPU cannot be read")


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


# --------------------------------------------------------------------------------------------
# Publishing with confirms, B messages in flight at a time


class BatchPublisher:
    """Publishes `total` messages to `queue` in batches of `batch`, each batch's confirms awaited
    before the next (pika's asynchronous connection: the blocking one waits after every
    message). Confirms may come `multiple`; a nack fails the run."""

    def __init__(self, queue: str, total: int, batch: int, body: bytes):
        self.queue, self.total, self.batch, self.body = queue, total, batch, body
        self.sent = self.confirmed = 0
        self.failure: str | None = None
        self.connection = SelectConnection(
            pika.URLParameters(AMQP_URL),
            on_open_callback=self._opened,
            on_open_error_callback=self._failed,
            on_close_callback=lambda connection, _reason: connection.ioloop.stop(),
        )

    def run(self) -> None:
        self.connection.ioloop.start()
        if self.failure:
            raise RuntimeError(self.failure)

    def _failed(self, connection: SelectConnection, error: Exception) -> None:
        self.failure = f"cannot connect: {error!r}"
        connection.ioloop.stop()

    def _opened(self, connection: SelectConnection) -> None:
        connection.channel(on_open_callback=self._channel)

    def _channel(self, channel: pika.channel.Channel) -> None:
        self.channel = channel
        channel.confirm_delivery(self._confirmed)
        self._publish_batch()

    def _publish_batch(self) -> None:
        for _ in range(min(self.batch, self.total - self.sent)):
            self.channel.basic_publish("", self.queue, self.body, PERSISTENT)
            self.sent += 1

    def _confirmed(self, frame: pika.frame.Method) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            self.failure = f"the broker refused message {method.delivery_tag}"
            self.connection.close()
            return
        self.confirmed = method.delivery_tag if method.multiple else self.confirmed + 1
        if self.confirmed < self.sent:
            return
        if self.sent < self.total:
            self._publish_batch()
        else:
            self.connection.close()  # its close callback stops the loop


def publish(queue: str, total: int, batch: int, body: bytes) -> None:
    BatchPublisher(queue, total, batch, body).run()


def consume(queue: str, total: int, prefetch: int) -> None:
    """`total` messages from `queue`, pushed with a prefetch, one ack each."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    for received, (method, _, _) in enumerate(channel.consume(queue, inactivity_timeout=60), 1):
        if method is None:
            raise RuntimeError(f"{queue}: {received - 1} of {total} messages, then nothing for 60 s")
        channel.basic_ack(method.delivery_tag)
        if received == total:
            break
    channel.cancel()
    connection.close()


def both(queue: str, total: int, batch: int, prefetch: int, body: bytes) -> None:
    """A publisher and a consumer in two processes (each its own GIL), until all went through."""
    consumer = multiprocessing.Process(target=consume, args=(queue, total, prefetch))
    consumer.start()
    publish(queue, total, batch, body)
    consumer.join()
    if consumer.exitcode != 0:
        raise RuntimeError(f"the consumer of {queue} failed")


# --------------------------------------------------------------------------------------------
# The measurement


@dataclass
class Phase:
    kind: str
    name: str
    messages: int
    seconds: float
    broker_cpu_s: float
    client_cpu_s: float  # this process and the consumer process it waited for

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def broker_us_per_message(self) -> float:
        return self.broker_cpu_s / self.messages * 1e6

    @property
    def client_us_per_message(self) -> float:
        return self.client_cpu_s / self.messages * 1e6


def _client_cpu() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def timed(kind: str, name: str, messages: int, broker: psutil.Process, work: Callable[[], None]) -> Phase:
    cpu, client, start = _cpu(broker), _client_cpu(), time.perf_counter()
    work()
    elapsed = time.perf_counter() - start
    return Phase(kind, name, messages, elapsed, _cpu(broker) - cpu, _client_cpu() - client)


def measure(kind: str, arguments: dict, n: int, batch: int, prefetch: int, body: bytes) -> list[Phase]:
    broker = _broker()
    queue = f"benchq{os.getpid()}.{kind.replace(' ', '-')}"
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments=arguments)
    one_by_one = max(1, n // 10)
    try:
        phases = [
            timed(
                kind,
                "publish, one confirm at a time",
                one_by_one,
                broker,
                lambda: publish(queue, one_by_one, 1, body),
            )
        ]
        channel.queue_purge(queue)
        phases.append(
            timed(kind, f"publish, confirms per {batch}", n, broker, lambda: publish(queue, n, batch, body))
        )
        phases.append(
            timed(
                kind,
                f"consume the backlog, prefetch {prefetch}",
                n,
                broker,
                lambda: consume(queue, n, prefetch),
            )
        )
        phases.append(
            timed(
                kind, "publish and consume at once", n, broker, lambda: both(queue, n, batch, prefetch, body)
            )
        )
    finally:
        channel.queue_delete(queue)
        connection.close()
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=50, help="messages published per confirm wait")
    parser.add_argument("--prefetch", type=int, default=50)
    parser.add_argument("--size", type=int, default=1_000, help="bytes per message (an event is ~1 kB)")
    parser.add_argument("--repeats", type=int, default=3, help="each figure is the median of the repeats")
    parser.add_argument("--quick", action="store_true", help="2,000 messages, one repeat")
    args = parser.parse_args()
    n, repeats = (2_000, 1) if args.quick else (args.messages, args.repeats)
    body = b'{"data": "' + b"x" * max(0, args.size - 12) + b'"}'
    print(f"{n} persistent messages of {len(body)} bytes, batches of {args.batch}, prefetch {args.prefetch}")
    runs: dict[str, list[list[Phase]]] = {kind: [] for kind in KINDS}
    for _ in range(repeats):
        for kind, arguments in KINDS.items():
            runs[kind].append(measure(kind, arguments, n, args.batch, args.prefetch, body))
    phase = f"phase (median of {repeats})"
    print(f"\n{'queue':12} {phase:42} {'msg/s':>9} {'broker CPU µs/msg':>18} {'client CPU µs/msg':>18}")
    for kind, measured in runs.items():
        for phases in zip(*measured, strict=True):
            rate = statistics.median(p.per_second for p in phases)
            broker_us = statistics.median(p.broker_us_per_message for p in phases)
            client_us = statistics.median(p.client_us_per_message for p in phases)
            print(f"{kind:12} {phases[0].name:42} {rate:9.0f} {broker_us:18.0f} {client_us:18.0f}")


if __name__ == "__main__":
    main()
