"""CPU seconds of named groups of processes over windows of a run, read from /proc (psutil).

A group is a function that picks its processes from the machine's process table (the topology's
process and its descendants, the PostgreSQL backends of some databases, the broker). A sampler
thread lists the machine's processes once and reads each group's CPU time (user + system) about
every 2 seconds, keeping the last reading of each process, so a process that exits mid-run still
counts up to its last sample; one that lives less than a sample is missed. `mark(label)` takes a
fresh reading and stores it; `between(a, b)` is each group's CPU seconds from mark a to mark b (a
process born after a counts from zero)."""

from __future__ import annotations

import json
import os
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

Key = tuple[int, float]  # pid and start time: a reused pid is another process
SAMPLE_S = 2.0  # one pass over /proc costs ~15 ms of CPU on a busy machine


class ProcessTable:
    """The machine's processes at one moment, by pid and by parent: one pass over /proc, however
    many groups look at it."""

    def __init__(self) -> None:
        self.by_pid: dict[int, psutil.Process] = {}
        self.children: dict[int, list[psutil.Process]] = defaultdict(list)
        for process in psutil.process_iter(["ppid", "name"]):
            self.by_pid[process.pid] = process
            self.children[process.info["ppid"]].append(process)

    def family(self, pid: int) -> list[psutil.Process]:
        """A process and all its descendants (a gunicorn master and its workers, a worker and
        its pool, nginx and its workers)."""
        if pid not in self.by_pid:
            return []
        out, pending = [], [self.by_pid[pid]]
        while pending:
            process = pending.pop()
            out.append(process)
            pending.extend(self.children.get(process.pid, []))
        return out

    def named(self, name: str) -> list[psutil.Process]:
        return [p for p in self.by_pid.values() if p.info["name"] == name]


Finder = Callable[[ProcessTable], Iterable[psutil.Process]]


def _seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class CpuMeter:
    def __init__(self, groups: dict[str, Finder]):
        self.groups = groups
        self._last: dict[str, dict[Key, float]] = {name: {} for name in groups}
        self._marks: dict[str, dict[str, dict[Key, float]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def members(self, table: ProcessTable | None = None) -> dict[str, list[psutil.Process]]:
        table = table or ProcessTable()
        return {name: list(find(table)) for name, find in self.groups.items()}

    def sample(self) -> None:
        for name, processes in self.members().items():
            readings = {}
            for process in processes:
                try:
                    readings[(process.pid, process.create_time())] = _seconds(process)
                except psutil.Error:
                    continue
            with self._lock:
                self._last[name].update(readings)

    def __enter__(self) -> CpuMeter:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def mark(self, label: str) -> None:
        self.sample()
        with self._lock:
            self._marks[label] = {name: dict(readings) for name, readings in self._last.items()}

    def between(self, start: str, end: str) -> dict[str, float]:
        first, last = self._marks[start], self._marks[end]
        return {
            name: sum(max(0.0, seconds - first[name].get(key, 0.0)) for key, seconds in last[name].items())
            for name in self.groups
        }


# --------------------------------------------------------------------------------------------
# Groups


def topology_groups(state: Path) -> dict[str, Finder]:
    """One group per process of a `make up` state file (run/<dir>/topology.json), by its name."""
    processes = json.loads(state.read_text()).get("processes", [])

    def finder(pid: int) -> Finder:
        return lambda table: table.family(pid)

    return {entry["name"]: finder(entry["pid"]) for entry in processes if entry.get("pid")}


# 'postgres: 15/main: user dbname 127.0.0.1(54321) idle' (the cluster part is Debian's)
_BACKEND_TITLE = re.compile(r"^postgres: (?:\S+: )?\S+ (\S+) (?:\S+\(\d+\)|\[local\])")


def _backend_database(process: psutil.Process) -> str | None:
    """The database of a client backend from its title; None for the server's own processes
    (checkpointer, WAL writer, autovacuum, ...)."""
    try:
        match = _BACKEND_TITLE.match(" ".join(process.cmdline()).strip())
    except psutil.Error:
        return None
    return match.group(1) if match else None


def postgres_groups(databases: Iterable[str], poller_pids: set[int]) -> dict[str, Finder]:
    """PostgreSQL as three groups: the backends serving `databases` (their clients' work), the
    server's shared processes (postmaster, WAL writer, checkpointer, autovacuum), which also serve
    whatever else runs on the machine, and the backends of the bench's own poller (`poller_pids`,
    filled in once it has connected), kept out of the first."""
    wanted = set(databases)
    database_of: dict[Key, str | None] = {}  # a backend serves one database all its life

    def server(table: ProcessTable) -> list[tuple[psutil.Process, str | None]]:
        postmasters = [
            p
            for p in table.named("postgres")
            if p.info["ppid"] not in table.by_pid or table.by_pid[p.info["ppid"]].info["name"] != "postgres"
        ]
        out = []
        for process in [*postmasters, *(c for p in postmasters for c in table.children.get(p.pid, []))]:
            try:
                key = (process.pid, process.create_time())
            except psutil.Error:
                continue
            if key not in database_of:
                database_of[key] = _backend_database(process)
            out.append((process, database_of[key]))
        return out

    def backends(table: ProcessTable) -> list[psutil.Process]:
        return [p for p, db in server(table) if p.pid not in poller_pids and db in wanted]

    def shared(table: ProcessTable) -> list[psutil.Process]:
        return [p for p, db in server(table) if db is None]

    def poller(table: ProcessTable) -> list[psutil.Process]:
        return [p for p, _ in server(table) if p.pid in poller_pids]

    return {"postgresql backends": backends, "postgresql shared": shared, "bench poller backend": poller}


def rabbitmq_group() -> dict[str, Finder]:
    """The broker's Erlang VM (beam.smp) and its helpers; it serves every client of the machine."""
    return {"rabbitmq": lambda table: [c for vm in table.named("beam.smp") for c in table.family(vm.pid)]}


def own_process() -> dict[str, Finder]:
    """The bench's own process (the load generator's threads, the poller, this meter)."""
    return {"bench process": lambda table: table.family(os.getpid())[:1]}
