"""CPU seconds of named groups of processes over windows of a run, read from /proc (psutil).

A group is a function that lists its processes now (the topology's process and its children, the
PostgreSQL backends of some databases, the broker). A sampler thread reads every process's CPU
time (user + system) about once a second and keeps the last reading of each, so a process that
exits mid-run still counts up to its last sample; one that lives less than a sample is missed.
`mark(label)` takes a fresh reading of everything and stores it; `between(a, b)` is each group's
CPU seconds from mark a to mark b (a process born after a counts from zero)."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

Finder = Callable[[], Iterable[psutil.Process]]
Key = tuple[int, float]  # pid and start time: a reused pid is another process

SAMPLE_S = 1.0


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

    def sample(self) -> None:
        for name, find in self.groups.items():
            try:
                processes = list(find())
            except psutil.Error:
                continue
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


def family(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (a gunicorn master and its workers, a worker and its
    pool, nginx and its workers)."""
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return []


def topology_groups(state: Path) -> dict[str, Finder]:
    """One group per process of a `make up` state file (run/<dir>/topology.json), by its name."""
    processes = json.loads(state.read_text()).get("processes", [])
    return {entry["name"]: (lambda pid=entry["pid"]: family(pid)) for entry in processes if entry.get("pid")}


def _postmaster() -> psutil.Process | None:
    for process in psutil.process_iter(["name", "ppid"]):
        if process.info["name"] == "postgres":
            try:
                parent = process.parent()
            except psutil.Error:
                continue
            if parent is None or parent.name() != "postgres":
                return process
    return None


# 'postgres: 15/main: user dbname 127.0.0.1(54321) idle' (the cluster part is Debian's)
_BACKEND_TITLE = re.compile(r"^postgres: (?:\S+: )?\S+ (\S+) (?:\S+\(\d+\)|\[local\])")


def _backend_database(process: psutil.Process) -> str | None:
    """The database of a client backend from its title; None for the server's own processes
    (checkpointer, WAL writer, autovacuum launcher, ...)."""
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
    postmaster: list[psutil.Process] = []

    def server() -> list[psutil.Process]:
        if not postmaster or not postmaster[0].is_running():
            found = _postmaster()
            postmaster[:] = [found] if found else []
        if not postmaster:
            return []
        try:
            return [postmaster[0], *postmaster[0].children()]
        except psutil.Error:
            return []

    def backends() -> list[psutil.Process]:
        return [p for p in server() if p.pid not in poller_pids and _backend_database(p) in wanted]

    def shared() -> list[psutil.Process]:
        return [p for p in server() if _backend_database(p) is None]

    def poller() -> list[psutil.Process]:
        return [p for p in server() if p.pid in poller_pids]

    return {"postgresql backends": backends, "postgresql shared": shared, "bench poller backend": poller}


def rabbitmq_group() -> dict[str, Finder]:
    """The broker's Erlang VM (beam.smp) and its helpers; it serves every client of the machine."""

    vm: list[psutil.Process] = []

    def broker() -> list[psutil.Process]:
        if not vm or not vm[0].is_running():
            vm[:] = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "beam.smp"][:1]
        return family(vm[0].pid) if vm else []

    return {"rabbitmq": broker}


def own_process() -> dict[str, Finder]:
    """The bench's own process (the load generator's threads, the poller, this meter)."""
    me = psutil.Process(os.getpid())
    return {"bench process": lambda: [me]}
