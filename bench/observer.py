"""Watching a system under test from outside: the CPU of each of its processes and of PostgreSQL
and RabbitMQ (bench.cpu), and what the broker and the databases counted (bench.broker_stats,
bench.database_stats), at marked moments of a run.

A run marks `idle_start` and `idle_end` around a few seconds of nothing to do (the background
rate: polling loops, heartbeats), `run_start` before the first submission, and `settled` once the
work is done, the queues are empty and the counters have caught up. The message budget per task
is what was counted from `run_start` to `settled`, less the background rate over the time after
the last task was done (`done`), divided by the tasks done."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from . import broker_stats, cpu, database_stats
from .topology import ADMIN_URL

MarkCounters = dict[str, float]


@dataclass(frozen=True)
class Waits:
    """How long a run waits around its work: `idle_s` of nothing before it (the background
    rate), then, once the work is done, until the queues have read empty for `drained_for_s`
    (the broker's figures lag by its stats interval) and `settle_s` has passed (PostgreSQL
    publishes an idle backend's figures within 10 s)."""

    idle_s: float
    settle_s: float
    drained_for_s: float


FULL = Waits(idle_s=10.0, settle_s=database_stats.STATS_DELAY_S, drained_for_s=broker_stats.STATS_INTERVAL_S)
QUICK = Waits(idle_s=3.0, settle_s=6.0, drained_for_s=0.0)  # the code runs; its figures are not read


@dataclass
class Counters:
    """Everything counted outside the processes at one moment, flattened to `what:who` keys."""

    at: float
    values: MarkCounters = field(default_factory=dict)

    def minus(self, other: Counters) -> MarkCounters:
        """What was counted since `other`; a counter kept per object (`what@object`) is summed
        over the objects, each counting from zero if it is new, and left out if it is gone."""
        out: MarkCounters = {}
        for key, value in self.values.items():
            what = key.split("@", 1)[0]
            out[what] = out.get(what, 0.0) + value - other.values.get(key, 0.0)
        return out


class Observer:
    """`groups` are the system's own processes by name; `databases` its databases (name -> URL);
    `queue_prefixes` the broker queues that are its own; `metrics_dirs` the Prometheus
    multiprocess folders its processes write (statement counts), if any."""

    def __init__(
        self,
        groups: dict[str, cpu.Finder],
        databases: dict[str, str],
        queue_prefixes: Iterable[str],
        metrics_dirs: Iterable[Path] = (),
    ):
        self.own = list(groups)
        self.databases = databases
        self.queue_prefixes = tuple(queue_prefixes)
        self.metrics_dirs = list(metrics_dirs)
        self.poller_pids: set[int] = set()
        names = (url.rsplit("/", 1)[1] for url in databases.values())
        self.meter = cpu.CpuMeter(
            {
                **groups,
                **cpu.postgres_groups(names, self.poller_pids),
                **cpu.rabbitmq_group(),
                **cpu.own_process(),
            }
        )
        self.management = broker_stats.Management()
        self.broker_available = self.management.available()
        self.counters: dict[str, Counters] = {}
        self.times: dict[str, float] = {}
        self.pid_owners: dict[int, str] = {}
        # The broker forgets a channel's figures when it closes (an idle publisher's connection
        # dropped for missed heartbeats, a reconnect): every object's last figures, read every
        # stats interval, stand in for it.
        self._broker_seen: dict[str, float] = {}
        self._broker_lock = threading.Lock()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_broker, name="broker-sampler", daemon=True)

    def __enter__(self) -> Observer:
        self.meter.__enter__()
        if self.broker_available:
            self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._sampler.is_alive():
            self._sampler.join()
        self.meter.__exit__(*exc)

    def _families(self) -> dict[str, list]:
        members = self.meter.members()
        return {name: members[name] for name in [*self.own, "bench process"]}

    def _sample_broker(self) -> None:
        while not self._stop.wait(broker_stats.STATS_INTERVAL_S):
            try:
                self._read_broker(self._families())
            except requests.RequestException:
                continue  # the next reading will do

    def _read_broker(self, families: dict[str, list]) -> dict[str, float]:
        """Every queue's, channel's and connection's figures (`what@object`), the last seen of
        those that are gone included."""
        broker = self.management.read(self.queue_prefixes, broker_stats.broker_ports(families))
        values: dict[str, float] = {}
        for queue, queue_counts in broker.queues.items():
            for counter, value in queue_counts.items():
                values[f"queue {counter}@{queue}"] = value
        for channel, (owner, channel_counts) in broker.channels.items():
            for counter, value in channel_counts.items():
                values[f"channel {counter}:{owner}@{channel}"] = value
        for connection, (owner, packets) in broker.packets.items():
            values[f"packets:{owner}@{connection}"] = packets
        with self._broker_lock:
            for key, figure in values.items():
                self._broker_seen[key] = max(figure, self._broker_seen.get(key, 0.0))
            return dict(self._broker_seen)

    def mark(self, label: str, counters: bool = False) -> None:
        self.times[label] = time.monotonic()
        self.meter.mark(label)
        if counters:
            self.counters[label] = self._read_counters()

    def _read_counters(self) -> Counters:
        families = self._families()
        reading = Counters(time.monotonic())
        values = reading.values
        if self.broker_available:
            # per object (`@` its name), summed after the difference (bench.observer.Counters)
            values.update(self._read_broker(families))
        for name, counts in database_stats.server_counts(ADMIN_URL, self.databases).items():
            for counter, value in counts.items():
                values[f"{counter}:{name}"] = float(value)
            # this reading's look at the tables is one transaction there, seen by the next reading
            values[f"bench transactions:{name}"] = float(len(self.counters))
        # a process that exited keeps its name: its statement file stays and still counts
        self.pid_owners.update({p.pid: name for name, members in families.items() for p in members})
        pids = self.pid_owners
        by_database = {url.rsplit("/", 1)[1]: name for name, url in self.databases.items()}
        for (owner, database), statements in database_stats.statement_counts(self.metrics_dirs, pids).items():
            for key in (f"statements:{by_database.get(database, database)}", f"statements by:{owner}"):
                values[key] = values.get(key, 0.0) + statements
        return reading

    def cpu_seconds(self, start: str, end: str) -> dict[str, float]:
        return self.meter.between(start, end)

    def wait_until_settled(self, done: str, deadline_s: float, waits: Waits) -> bool:
        """Until the system's queues are empty and the counters have caught up after the mark
        `done` (`waits`); then marks `settled`. False when the queues did not empty in time."""
        drained = (
            broker_stats.wait_until_drained(
                self.management, self.queue_prefixes, deadline_s, waits.drained_for_s
            )
            if self.broker_available
            else True
        )
        rest = self.times[done] + waits.settle_s - time.monotonic()
        if rest > 0:
            time.sleep(rest)
        self.mark("settled", counters=True)
        return drained

    def _between(self, start: str, end: str, bench_transactions: dict[str, int]) -> MarkCounters:
        """Counted from `start` to `end`, without the transactions of the bench's own readings and
        of `bench_transactions` (its completion poll, per database)."""
        delta = self.counters[end].minus(self.counters[start])
        for name in self.databases:
            own = delta.pop(f"bench transactions:{name}", 0.0) + bench_transactions.get(name, 0)
            if f"xact_commit:{name}" in delta:
                delta[f"xact_commit:{name}"] -= own
        return delta

    def idle_rates(self) -> MarkCounters:
        """The counters per second over `idle_start`..`idle_end`."""
        seconds = self.counters["idle_end"].at - self.counters["idle_start"].at
        return {k: v / seconds for k, v in self._between("idle_start", "idle_end", {}).items()}

    def per_task(self, tasks: int, bench_transactions: dict[str, int]) -> MarkCounters:
        """`run_start` to `settled` per task, less the idle rate over the time from `done` to
        `settled` (the background that ran only because the bench waited for the counters)."""
        idle = self.idle_rates()
        tail_s = self.counters["settled"].at - self.times["done"]
        run = self._between("run_start", "settled", bench_transactions)
        if not tasks:
            return {}
        # floored at zero: a small run's count can be below the background estimated for its tail
        return {k: max(0.0, v - idle.get(k, 0.0) * tail_s) / tasks for k, v in run.items()}
