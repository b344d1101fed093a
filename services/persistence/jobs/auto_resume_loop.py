"""persistence's auto-resume loop: a job stopped by accident (failed, or interrupted and not run
again by core) is resumed once it has been stopped for TASKHUB_AUTO_RESUME_SECONDS, with the
criteria of POST auto-resume/ (docs/persistence.md).

Idle, it costs nothing: it sleeps until the next job is due (the oldest stop among the jobs it
would take, plus the delay, computed from the database) or until a job is stopped by accident
(lifecycle.settle wakes it at commit, from whichever process stopped the job). Never a timer that
queries the database when nothing changed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from threading import Event as StopSignal
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from shared.background import when_due
from shared.events.envelope import utcnow
from shared.unit_of_work import UnitOfWork
from shared.wakeups import Signal

from . import service as jobs
from .schemas import AutoResumeSchema

log = logging.getLogger(__name__)

# every brand, up to this many jobs per pass (a full pass is followed by another at once)
JOBS_PER_PASS = 100
# after a failed pass (the database is away), or a pass that could not resume what was due
RETRY_SECONDS = 5.0


class AutoResumeLoop:
    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        session_factory: sessionmaker[Session],
        signal: Signal,
        delay_seconds: float,
        max_per_job: int,
    ) -> None:
        self.uow_factory, self.session_factory, self.signal = uow_factory, session_factory, signal
        self.delay = timedelta(seconds=delay_seconds)
        self.max_per_job = max_per_job
        self.options = AutoResumeSchema().load({"max_jobs": JOBS_PER_PASS})
        # jobs whose resume was refused (a corrupted checkpoint), with when they had stopped: not
        # tried again, nor counted as due, until they stop anew
        self.refused: dict[int, datetime] = {}
        self.passes = 0  # passes done (after each one it sleeps without a query until due or woken)

    def resume_due(self, now: datetime | None = None) -> dict[str, Any]:
        """Resume the jobs stopped for at least the delay at `now`."""
        now = now or utcnow()
        return jobs.auto_resume(
            self.uow_factory,
            None,
            self.options,
            self.max_per_job,
            stopped_before=now - self.delay,
            refused=self.refused,
        )

    def seconds_to_next(self, now: datetime | None = None) -> float | None:
        """How long until the next job is due (0: now; None: no job will be, until woken)."""
        with self.session_factory() as session:
            oldest = jobs.next_auto_resume(session, self.options, self.max_per_job, set(self.refused))
        if oldest is None:
            return None
        return max(0.0, (oldest + self.delay - (now or utcnow())).total_seconds())

    def pass_once(self) -> datetime | None:
        """One pass; returns when the next one is due (None: not until woken)."""
        resumed = self.resume_due()["resumed_jobs"]
        wait = 0.0 if resumed >= JOBS_PER_PASS else self.seconds_to_next()
        if wait == 0.0 and not resumed:
            wait = RETRY_SECONDS  # due but not taken: never a busy loop
        self.passes += 1
        return None if wait is None else utcnow() + timedelta(seconds=wait)

    def run(self, stop: StopSignal) -> None:
        """Pass after pass, sleeping in between until due or woken (shared.background.when_due)."""
        when_due("persistence.auto-resume", self.signal, self.pass_once, retry_seconds=RETRY_SECONDS).run(
            stop
        )
