"""The background side of a service process: its outbox relay, its event consumers and its
periodic jobs, each a loop on its own thread that ends when `stop` is set.

`make up` and Kubernetes run them as a service's "background" process
(`python -m shared.run_service <service> background`); `make run` runs them all in one process."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from threading import Event as StopSignal

from .wakeups import STOP_CHECK_SECONDS, Signal

log = logging.getLogger(__name__)


@dataclass
class Loop:
    name: str
    run: Callable[[StopSignal], None]


def when_due(
    name: str, wakeup: Signal, job: Callable[[], datetime | None], *, retry_seconds: float = 5.0
) -> Loop:
    """A loop that runs `job` when woken or when what it waits for is due: `job` does its work and
    returns when it is next needed (None: not until woken). No fixed-interval polling."""

    def run(stop: StopSignal) -> None:
        while not stop.is_set():
            try:
                due = job()
            except Exception:
                log.exception("job failed", extra={"job": name})
                due = datetime.now(UTC) + timedelta(seconds=retry_seconds)
            deadline = None if due is None else time.monotonic() + (due - datetime.now(UTC)).total_seconds()
            while not stop.is_set():
                left = (
                    STOP_CHECK_SECONDS
                    if deadline is None
                    else min(STOP_CHECK_SECONDS, deadline - time.monotonic())
                )
                if left <= 0 or wakeup.wait(left):
                    break

    return Loop(name, run)


def start_loops(loops: Sequence[Loop], stop: StopSignal) -> list[threading.Thread]:
    threads = []
    for loop in loops:
        thread = threading.Thread(target=_guarded(loop, stop), name=loop.name, daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def _guarded(loop: Loop, stop: StopSignal) -> Callable[[], None]:
    def target() -> None:
        while not stop.is_set():
            try:
                loop.run(stop)
            except Exception:
                log.exception("loop crashed; restarting", extra={"loop": loop.name})
                stop.wait(1.0)

    return target


def run_until_signalled(loops: Sequence[Loop], grace_seconds: float = 10.0) -> None:
    """Run loops until SIGTERM/SIGINT (a Kubernetes rolling update), then stop them cleanly."""
    stop = StopSignal()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threads = start_loops(loops, stop)
    stop.wait()
    for thread in threads:
        thread.join(grace_seconds)
