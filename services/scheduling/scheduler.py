"""The scheduler: fires due slots. Its own process (`python -m services.scheduling.scheduler`, its
own Deployment, any number of replicas); `make run` hosts it on a thread beside scheduling's app
(`hosted_scheduler` in services/scheduling/app.py).

It sleeps until the next slot it knows is due, computed from the database (the smallest
`next_run_at` of the active schedules, less the lookahead for those that may fire early), or until
woken: a schedule was created, changed, toggled or run now, or a run waiting to be cancelled
learnt its task (`planning.SCHEDULES`, sent at commit by scheduling's web and background processes
as a PostgreSQL NOTIFY, which the wake-up listener of this process turns into the signal). Idle, it
sends no query. Its schedule.fired events are published by scheduling's background process, whose
relay the outbox's NOTIFY wakes.

Replicas need no leader: each claims due schedules with FOR UPDATE SKIP LOCKED in batches, and
the run's unique slot key backs that up (see firing.py). The clock is injectable: tests hand it
a clock they move, so no test waits minutes.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from threading import Event as StopSignal

from prometheus_client import Counter, Histogram
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.background import Loop, run_until_signalled, when_due
from shared.config import load_settings
from shared.core_client import CoreUnavailable
from shared.logs import configure_logging
from shared.migrations import upgrade
from shared.prometheus_metrics import serve_metrics
from shared.service_app import auto_migrate

from .container import Clock, SchedulingContainer, bootstrap
from .firing import ACTIVE_RUN, Schedule, fire_due
from .models import CronJob, PeriodicTask, ScheduleRun
from .planning import SCHEDULES

log = logging.getLogger(__name__)

RUNS_FIRED = Counter(
    "taskhub_scheduler_runs_fired_total", "Slots fired by the scheduler", ["kind", "trigger"]
)
FIRE_DELAY = Histogram(
    "taskhub_scheduler_fire_delay_seconds",
    "Fire time minus planned time of on-time slots",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)

# after a pass that failed (the database is away)
ERROR_RETRY_SECONDS = 1.0
# slots were due but none could be taken (another replica holds them, or firing clashed): look
# again shortly rather than at once
BUSY_RETRY_SECONDS = 0.25
# core did not answer a cancel_previous request
CORE_RETRY_SECONDS = 5.0
CANCELLATIONS_PER_PASS = 100


class Scheduler:
    def __init__(self, container: SchedulingContainer, clock: Clock | None = None):
        self.container = container
        self.clock = clock or container.clock
        self.wakeup = container.ctx.wakeups.signal(SCHEDULES)
        self.passes = 0  # passes done (after each one it sleeps without a query until due or woken)
        self.cancellations_pending = False  # core did not answer a cancel_previous request

    def tick(self) -> int:
        """Fire everything due now, a batch per transaction, until nothing due is left for this
        replica. Returns the number of runs fired."""
        return len(self._fire_due())

    def _fire_due(self) -> list[ScheduleRun]:
        fired: list[ScheduleRun] = []
        for model in (PeriodicTask, CronJob):
            while True:
                now = self.clock()
                with self.container.uow() as uow:
                    batch = fire_due(uow, model, now, self.container.policy)
                    uow.commit()
                for run in batch.runs:
                    RUNS_FIRED.labels(model.kind, run.trigger).inc()
                    if run.trigger == "scheduler":
                        FIRE_DELAY.observe(max(0.0, (run.fired_at - run.planned_time).total_seconds()))
                fired += batch.runs
                if batch.claimed < self.container.policy.batch_size:
                    break
        return fired

    def request_cancellations(self) -> int:
        """Overlap policy cancel_previous: ask core to cancel the runs marked for it, with the
        scheduler's machine token. A run whose task core has not announced yet waits its turn
        (the consumer wakes the scheduler when it learns it)."""
        with self.container.session_factory() as session:
            runs = session.scalars(
                select(ScheduleRun)
                .where(
                    ScheduleRun.cancel_requested_at.is_not(None),
                    ScheduleRun.task_pk.is_not(None),
                    ScheduleRun.status.in_(ACTIVE_RUN),
                )
                .order_by(ScheduleRun.cancel_requested_at)
                .limit(CANCELLATIONS_PER_PASS)
            ).all()
        self.cancellations_pending = False
        done = 0
        for run in runs:
            token = self.container.cancel_token(run.brand_id, run.task_pk or 0)
            if token is None:
                note = "cancel_previous: no machine signing key configured; decision recorded only"
            else:
                try:
                    code = self.container.core.cancel_task(token, run.brand_id, run.task_pk or 0)
                except CoreUnavailable as error:
                    log.warning("cancel_previous: core unavailable (%s); will retry", error)
                    self.cancellations_pending = True
                    break
                note = f"cancel_previous: core answered {code}"
            with self.container.uow() as uow:
                uow.session.execute(
                    update(ScheduleRun)
                    .where(ScheduleRun.id == run.id)
                    .values(cancel_requested_at=None, note=note)
                )
                uow.commit()
            done += 1
        return done

    def seconds_to_next_slot(self) -> float | None:
        """How long until a slot is due for this scheduler (0: now), None when no schedule is
        active. Two or four index lookups, whatever the number of schedules."""
        lookahead = self.container.policy.lookahead
        with self.container.session_factory() as session:
            moments = [_next_fire_time(session, model, lookahead) for model in (PeriodicTask, CronJob)]
        known = [moment for moment in moments if moment is not None]
        if not known:
            return None
        return max(0.0, (min(known) - self.clock()).total_seconds())

    def pass_once(self) -> datetime | None:
        """Fire what is due, ask core for the cancellations waiting (one indexed query: a pass
        only happens when something is due or changed), and say when to look again (wall time;
        None: not until woken)."""
        fired = self._fire_due()
        more_cancellations = self.request_cancellations() == CANCELLATIONS_PER_PASS
        wait = 0.0 if more_cancellations else self.seconds_to_next_slot()
        if wait == 0.0 and not fired and not more_cancellations:
            wait = BUSY_RETRY_SECONDS
        if self.cancellations_pending and not more_cancellations:
            wait = CORE_RETRY_SECONDS if wait is None else min(wait, CORE_RETRY_SECONDS)
        self.passes += 1
        return None if wait is None else datetime.now(UTC) + timedelta(seconds=wait)

    def run(self, stop: StopSignal) -> None:
        """Pass after pass, sleeping in between until due or woken (shared.background.when_due)."""
        when_due("scheduling.scheduler", self.wakeup, self.pass_once, retry_seconds=ERROR_RETRY_SECONDS).run(
            stop
        )


def _next_fire_time(session: Session, model: type[Schedule], lookahead: timedelta) -> datetime | None:
    """When the scheduler must next look at `model`'s schedules: the first `next_run_at`, less the
    lookahead if that schedule may fire early (overlap policy `allow`, see firing.claim_due);
    else the earlier of it and the first early-firing schedule's time less the lookahead."""
    first = session.execute(
        select(model.next_run_at, model.overlap_policy)
        .where(model.is_active.is_(True), model.next_run_at.is_not(None))
        .order_by(model.next_run_at)
        .limit(1)
    ).first()
    if first is None:
        return None
    if first.overlap_policy == "allow":
        return first.next_run_at - lookahead
    early = session.scalar(
        select(model.next_run_at)
        .where(
            model.is_active.is_(True),
            model.overlap_policy == "allow",
            model.next_run_at < first.next_run_at + lookahead,
        )
        .order_by(model.next_run_at)
        .limit(1)
    )
    if early is None:
        return first.next_run_at
    return min(first.next_run_at, early - lookahead)


def scheduler_loop(container: SchedulingContainer, clock: Clock | None = None) -> Loop:
    return Loop("scheduling.scheduler", Scheduler(container, clock).run)


def scheduler_loops(container: SchedulingContainer, clock: Clock | None = None) -> list[Loop]:
    """A scheduler process: the scheduler and the wake-up listener that feeds it."""
    listener = container.ctx.wakeups.listener()
    return [scheduler_loop(container, clock)] + ([listener] if listener else [])


def main() -> None:
    settings = load_settings("scheduling")
    configure_logging(settings.log_level, settings.log_json)
    serve_metrics(settings)  # TASKHUB_METRICS_PORT: /metrics for Prometheus
    container = bootstrap(settings)
    if auto_migrate(settings):
        upgrade("scheduling", container.ctx.engine)
    run_until_signalled(scheduler_loops(container))


if __name__ == "__main__":
    main()
