"""The worker watch: marks workers offline when their heartbeats stop (workers/service.py), so
that core runs their tasks again.

It never looks on a timer. After a pass it knows when the next online worker could fall silent
(its last heartbeat + the allowance) and sleeps until then; a heartbeat from a worker that was
not online (new, or back from silence) wakes it earlier (`WATCH_WAKEUP`, set by the consumer's
commit), since that worker's deadline was not counted. With no worker online it sleeps until
one speaks. Heartbeats of workers already online only move their deadlines later: the watch
finds them fresh when it wakes, and sleeps again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from threading import Event as StopSignal
from typing import NamedTuple

from shared.events.envelope import utcnow
from shared.unit_of_work import UnitOfWork
from shared.wakeups import Signal

from ..waiting import sleep_until_woken
from .service import mark_silent_offline, next_deadline

log = logging.getLogger(__name__)

# a worker already due that this pass did not mark is being marked by another replica right now
SOONEST_SECONDS = 0.1
# silent means "older than the allowance": wake just after a deadline, not at it
PAST_DEADLINE_SECONDS = 0.01
RETRY_SECONDS = 5.0  # after a pass that failed (the database is away)


class Sweep(NamedTuple):
    marked_offline: int
    next_in: float | None  # seconds until the next online worker could be silent; None: none online


class WorkerWatch:
    def __init__(
        self, uow_factory: Callable[[], UnitOfWork], offline_seconds: float, wakeup: Signal | None = None
    ) -> None:
        self.uow_factory, self.offline_seconds = uow_factory, offline_seconds
        self.wakeup = wakeup or Signal()

    def sweep(self) -> Sweep:
        """Mark the silent workers offline (each announced once), and tell when to look again."""
        now = utcnow()
        with self.uow_factory() as uow:
            marked = mark_silent_offline(uow, self.offline_seconds, now)
            deadline = next_deadline(uow.session, self.offline_seconds)
            uow.commit()
        if deadline is None:
            return Sweep(marked, None)
        return Sweep(marked, max(SOONEST_SECONDS, (deadline - now).total_seconds() + PAST_DEADLINE_SECONDS))

    def run(self, stop: StopSignal) -> None:
        while not stop.is_set():
            try:
                delay = self.sweep().next_in
            except Exception:
                log.exception("worker watch pass failed")
                delay = RETRY_SECONDS
            sleep_until_woken(self.wakeup, stop, delay)
