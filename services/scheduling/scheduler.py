"""The scheduler: fires due slots. Its own process (`python -m services.scheduling.scheduler`, its
own Deployment, any number of replicas) and hosted on threads by `make run` (`embedded_loops`).

Replicas need no leader: each claims due schedules with FOR UPDATE SKIP LOCKED in batches, and
the run's unique slot key backs that up (see firing.py). The clock is injectable: tests hand it
a clock they move, so no test waits minutes.
"""

from __future__ import annotations

import logging
import time
from threading import Event as StopSignal

from prometheus_client import Counter, Histogram
from sqlalchemy import select, update

from shared.background import Loop, run_until_signalled
from shared.config import env_float, load_settings
from shared.logs import configure_logging
from shared.migrations import upgrade

from .container import Clock, SchedulingContainer, bootstrap
from .core_client import CoreUnavailable
from .firing import ACTIVE_RUN, fire_due
from .models import CronJob, PeriodicTask, ScheduleRun

log = logging.getLogger(__name__)

RUNS_FIRED = Counter(
    "taskhub_scheduler_runs_fired_total", "Slots fired by the scheduler", ["kind", "trigger"]
)
FIRE_DELAY = Histogram(
    "taskhub_scheduler_fire_delay_seconds",
    "Fire time minus planned time of on-time slots",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)


class Scheduler:
    def __init__(self, container: SchedulingContainer, clock: Clock | None = None, poll_seconds: float = 0.1):
        self.container = container
        self.clock = clock or container.clock
        self.poll_seconds = poll_seconds

    def tick(self) -> int:
        """Fire everything due now, a batch per transaction, until nothing due is left for this
        replica. Returns the number of runs fired."""
        fired = 0
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
                fired += len(batch.runs)
                if batch.claimed < self.container.policy.batch_size:
                    break
        return fired

    def request_cancellations(self) -> int:
        """Overlap policy cancel_previous: ask core to cancel the runs marked for it, with the
        scheduler's machine token. A run whose task core has not announced yet waits its turn."""
        with self.container.session_factory() as session:
            runs = session.scalars(
                select(ScheduleRun)
                .where(
                    ScheduleRun.cancel_requested_at.is_not(None),
                    ScheduleRun.task_pk.is_not(None),
                    ScheduleRun.status.in_(ACTIVE_RUN),
                )
                .order_by(ScheduleRun.cancel_requested_at)
                .limit(100)
            ).all()
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

    def run(self, stop: StopSignal) -> None:
        last_cancel_pass = 0.0
        while not stop.is_set():
            try:
                self.tick()
                if time.monotonic() - last_cancel_pass >= 1.0:
                    last_cancel_pass = time.monotonic()
                    self.request_cancellations()
            except Exception:
                log.exception("scheduler pass failed")
                stop.wait(1.0)
            stop.wait(self.poll_seconds)


def scheduler_loops(container: SchedulingContainer, clock: Clock | None = None) -> list[Loop]:
    poll = env_float(container.ctx.settings, "TASKHUB_SCHEDULER_POLL_SECONDS", 0.1)
    return [Loop("scheduling.scheduler", Scheduler(container, clock, poll).run)]


def embedded_loops() -> list[Loop]:
    """`make run`: the scheduler on a thread, on its own engine over the embedded database (the
    scheduling app's loops already relay the outbox and consume core's events)."""
    return scheduler_loops(bootstrap(load_settings("scheduling")))


def main() -> None:
    settings = load_settings("scheduling")
    configure_logging(settings.log_level, settings.log_json)
    container = bootstrap(settings)
    if settings.get("TASKHUB_AUTO_MIGRATE", "true") != "false":
        upgrade("scheduling", container.ctx.engine)
    # its own relay too: schedule.fired leaves at once even where no API pod runs (relays are
    # safe side by side: each claims outbox rows with SKIP LOCKED)
    relay = container.relay()
    run_until_signalled([*scheduler_loops(container), Loop("scheduling.scheduler-relay", relay.run)])


if __name__ == "__main__":
    main()
