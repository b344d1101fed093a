"""A pool of long-lived child processes, one attempt at a time each.

Processes, not threads: Python cannot stop a thread, and a timeout or a forced cancel must really
stop the handler (and free what it holds). Killing the child does that; a fresh child takes its
place. Long-lived children make the per-task cost a pipe round trip, not a process start.

Children are started with "forkserver" (a clean, single-threaded server process forks them with
the handler modules preloaded; forking the worker itself would copy its threads and broker
connections) or "spawn" where forkserver does not exist."""

from __future__ import annotations

import logging
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from . import child

log = logging.getLogger(__name__)


def _context() -> Any:
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


@dataclass
class Running:
    """The attempt a slot runs, as the worker process follows it."""

    message: dict[str, Any]
    started_at: str
    started_monotonic: float
    deadline: float | None  # monotonic time its timeout hits
    progress_percentage: int = 0
    step: str | None = None
    stop_reason: str | None = None  # "cancelled", "revoked", "timeout", "shutdown"
    kill_at: float | None = None
    # the work delivery, held unacknowledged until the attempt is reported (see runtime.py)
    delivery: Any = None
    hold_until: float | None = None  # monotonic end of the hold window
    launched: bool = False  # handed to the child (a redelivered order waits for its announcement)

    @property
    def task_id(self) -> str:
        return str(self.message["task_id"])

    @property
    def attempt(self) -> int:
        return int(self.message.get("attempt") or 0)


@dataclass
class Slot:
    index: int
    process: Any = None
    conn: Connection | None = None
    lifeline: Connection | None = None
    stop: Any = None
    running: Running | None = None

    @property
    def free(self) -> bool:
        return self.running is None and self.alive

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()


class ProcessPool:
    def __init__(self, size: int, handler_modules: list[str]) -> None:
        self.size, self.modules = size, list(handler_modules)
        self.mp = _context()
        if self.mp.get_start_method() == "forkserver":
            self.mp.set_forkserver_preload(["services.worker.child", *child.DEFAULT_MODULES, *self.modules])
        self.slots = [Slot(i) for i in range(size)]

    def start(self) -> None:
        for slot in self.slots:
            self._spawn(slot)

    def _spawn(self, slot: Slot) -> None:
        parent_conn, child_conn = self.mp.Pipe(duplex=True)
        lifeline_r, lifeline_w = self.mp.Pipe(duplex=False)
        slot.stop = self.mp.Event()
        slot.process = self.mp.Process(
            target=child.serve,
            args=(child_conn, lifeline_r, slot.stop, self.modules),
            name=f"taskhub-worker-child-{slot.index}",
            daemon=True,
        )
        slot.process.start()
        child_conn.close()
        lifeline_r.close()
        slot.conn, slot.lifeline, slot.running = parent_conn, lifeline_w, None

    def reserve(self, slot: Slot, running: Running) -> None:
        """Mark the slot busy with an attempt that will start later (submit starts it)."""
        slot.running = running

    def submit(self, slot: Slot, job: dict[str, Any], running: Running) -> None:
        slot.stop.clear()
        slot.running = running
        running.launched = True
        assert slot.conn is not None
        slot.conn.send(job)

    def request_stop(self, slot: Slot, reason: str, grace: float) -> None:
        """Ask the handler to stop (it sees ctx.should_stop); kill it if still running at grace."""
        if slot.running is None or slot.running.stop_reason is not None:
            return
        slot.running.stop_reason = reason
        slot.running.kill_at = time.monotonic() + grace
        slot.stop.set()

    def replace(self, slot: Slot) -> None:
        """Kill the child (whatever it is doing) and start a fresh one in its place."""
        self._kill(slot)
        self._spawn(slot)

    def _kill(self, slot: Slot) -> None:
        if slot.process is not None and slot.process.is_alive():
            slot.process.kill()
        if slot.process is not None:
            slot.process.join(5)
        for conn in (slot.conn, slot.lifeline):
            if conn is not None:
                conn.close()
        slot.process = slot.conn = slot.lifeline = None
        slot.running = None

    def close(self) -> None:
        for slot in self.slots:
            self._kill(slot)
