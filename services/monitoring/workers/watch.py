"""The worker watch: marks workers offline when their heartbeats stop (workers/service.py), so
that core runs their tasks again.

It never looks on a timer. After a pass it knows when the next online worker could fall silent
(its last heartbeat + the allowance) and sleeps until then; a heartbeat from a worker that was
not online (new, or back from silence) wakes it earlier (`WATCH_WAKEUP`, set by the consumer's
commit), since that worker's deadline was not counted. With no worker online it sleeps until
one speaks. Heartbeats of workers already online only move their deadlines later: the watch
finds them fresh when it wakes, and sleeps again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NamedTuple

from shared.background import Loop, when_due
from shared.events.envelope import utcnow
from shared.unit_of_work import UnitOfWork
from shared.wakeups import Signal

from .service import mark_silent_offline, next_deadline

# a worker already due that this pass did not mark is being marked by another replica right now
SOONEST = timedelta(seconds=0.1)
# silent means "older than the allowance": look just after a deadline, not at it
PAST_DEADLINE = timedelta(seconds=0.01)


class Sweep(NamedTuple):
    marked_offline: int
    next_due: datetime | None  # when the next online worker could be silent; None: none online


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
        return Sweep(marked, max(now + SOONEST, deadline + PAST_DEADLINE))

    def loop(self) -> Loop:
        return when_due("monitoring.worker-watch", self.wakeup, lambda: self.sweep().next_due)
