"""What RabbitMQ counted, read from its management API (the `rabbitmq_management` plugin):
per queue (messages routed in, delivered, got, got empty, acked, redelivered) and per channel,
attributed to the process that owns the channel's connection (by the client's TCP port).

The broker refreshes these figures every `collect_statistics_interval` (5 s by default), so a
reading is up to that old: take the last one at least that long after the work ended. A channel
closed before a reading takes its figures with it; the platform's connections live as long as
their process, the per-queue figures last as long as the queue."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

import psutil
import requests

MANAGEMENT_URL = os.environ.get("BENCH_RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
MANAGEMENT_AUTH = ("guest", "guest")
STATS_INTERVAL_S = 5.0
AMQP_PORT = 5672
DEAD_LETTERS = ".dead"  # the platform parks a queue's poison messages in `<queue>.dead`

# RabbitMQ 3.10 does not count empty basic.get replies (get_empty stays 0); the packets each
# connection sent to the broker (recv_cnt) show that chatter, and every other command, instead.
QUEUE_COUNTERS = ("publish", "deliver", "get", "ack", "redeliver")
CHANNEL_COUNTERS = ("publish", "confirm", "deliver", "get", "ack")

Counts = dict[str, int]


@dataclass
class BrokerReading:
    queues: dict[str, Counts] = field(default_factory=dict)  # queue name -> counter -> total
    channels: dict[str, tuple[str, Counts]] = field(default_factory=dict)  # channel -> (process, counters)
    packets: dict[str, tuple[str, int]] = field(default_factory=dict)  # connection -> (process, packets in)
    depth: int = 0  # messages ready or unacknowledged in the queues read, dead letters apart


class Management:
    def __init__(self, url: str = MANAGEMENT_URL, vhost: str = "/"):
        self.url = url.rstrip("/")
        self.vhost = quote(vhost, safe="")
        self.session = requests.Session()
        self.session.auth = MANAGEMENT_AUTH

    def _get(self, path: str, columns: str) -> list[dict]:
        response = self.session.get(f"{self.url}/api/{path}", params={"columns": columns}, timeout=10)
        response.raise_for_status()
        return response.json()

    def available(self) -> bool:
        try:
            self.session.get(f"{self.url}/api/overview", timeout=3).raise_for_status()
            return True
        except requests.RequestException:
            return False

    def read(self, queue_prefixes: Iterable[str], owners: Mapping[int, str]) -> BrokerReading:
        """The queues whose name starts with one of `queue_prefixes`, and the connections and
        channels whose client port is in `owners` (port -> process name)."""
        prefixes = tuple(queue_prefixes)
        reading = BrokerReading()
        for queue in self._get(f"queues/{self.vhost}", "name,message_stats,messages"):
            if queue["name"].startswith(prefixes):
                stats = queue.get("message_stats") or {}
                reading.queues[queue["name"]] = {c: int(stats.get(c, 0)) for c in QUEUE_COUNTERS}
                if not queue["name"].endswith(DEAD_LETTERS):
                    # a queue the broker has not measured yet is not known to be empty
                    messages = queue.get("messages")
                    reading.depth += 1 if messages is None else int(messages)
        if not owners:
            return reading
        for connection in self._get("connections", "name,peer_port,recv_cnt"):
            owner = owners.get(connection.get("peer_port", 0))
            if owner:
                reading.packets[connection["name"]] = (owner, int(connection.get("recv_cnt") or 0))
        for channel in self._get("channels", "name,connection_details,message_stats"):
            owner = owners.get((channel.get("connection_details") or {}).get("peer_port", 0))
            if owner:
                stats = channel.get("message_stats") or {}
                reading.channels[channel["name"]] = (
                    owner,
                    {c: int(stats.get(c, 0)) for c in CHANNEL_COUNTERS},
                )
        return reading


def broker_ports(processes: Mapping[str, Iterable[psutil.Process]]) -> dict[int, str]:
    """Client ports of the AMQP connections each named group of processes holds (one pass over
    the machine's sockets)."""
    owner = {process.pid: name for name, members in processes.items() for process in members}
    return {
        conn.laddr.port: owner[conn.pid]
        for conn in psutil.net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == AMQP_PORT and conn.pid in owner
    }


def wait_until_drained(
    management: Management, prefixes: Iterable[str], deadline_s: float, for_s: float, poll_s: float = 1.0
) -> bool:
    """True once the queues have held nothing (ready or unacked) in every reading for `for_s`
    (a stats interval: a reading may be that old), False at the deadline."""
    deadline = time.monotonic() + deadline_s
    empty_since: float | None = None
    while time.monotonic() < deadline:
        if management.read(prefixes, {}).depth == 0:
            empty_since = empty_since or time.monotonic()
            if time.monotonic() - empty_since >= for_s:
                return True
        else:
            empty_since = None
        time.sleep(poll_s)
    return False
