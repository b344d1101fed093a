"""persistence's composition root: everything a persistence process is made of, built once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from flask import current_app

from shared.background import Loop
from shared.config import Settings, env_float, env_int
from shared.core_client import CoreTasks, core_url
from shared.events.bus import EventBus
from shared.events.inbox_consumer import InboxConsumer
from shared.service_container import ServiceContainer
from shared.service_context import ServiceContext, make_bus

from . import read_model
from .jobs.auto_resume_loop import AutoResumeLoop
from .jobs.lifecycle import AUTO_RESUME_SIGNAL
from .models import Base


@dataclass
class PersistenceContainer(ServiceContainer):
    core: CoreTasks  # a task given a job through the API that this service has not heard of
    auto_resume_seconds: float  # how long a job stays stopped by accident before it is resumed; 0: never
    auto_resume_max_per_job: int

    def consumers(self) -> list[InboxConsumer]:
        """core's task events of persistent tasks only (the `persistent` header): task.created
        and task.deleted a batch at a time, the others one by one (read_model.py)."""
        consumer = self.ctx.inbox_consumer(
            "persistence",
            read_model.event_handlers(),
            batch_handlers=read_model.batch_handlers(),
            filtered=read_model.FILTERED,
        )
        return [consumer]

    @cached_property
    def auto_resumer(self) -> AutoResumeLoop:
        return AutoResumeLoop(
            self.uow,
            self.session_factory,
            self.ctx.wakeups.signal(AUTO_RESUME_SIGNAL),
            self.auto_resume_seconds,
            self.auto_resume_max_per_job,
        )

    def service_loops(self) -> list[Loop]:
        if self.auto_resume_seconds > 0:
            return [Loop("persistence.auto-resume", self.auto_resumer.run)]
        return []

    def auto_resume(self, now: datetime | None = None) -> dict[str, Any]:
        """One pass of the auto-resume loop: every brand, the jobs due at `now`."""
        return self.auto_resumer.resume_due(now)


def bootstrap(settings: Settings, bus: EventBus | None = None) -> PersistenceContainer:
    ctx = ServiceContext(settings, Base.metadata, bus or make_bus(settings))
    return PersistenceContainer(
        ctx=ctx,
        core=CoreTasks(core_url(settings), timeout=env_float(settings, "TASKHUB_CORE_TIMEOUT_SECONDS", 5.0)),
        auto_resume_seconds=env_float(settings, "TASKHUB_AUTO_RESUME_SECONDS", 60),
        auto_resume_max_per_job=env_int(settings, "TASKHUB_AUTO_RESUME_MAX_PER_JOB", 3),
    )


def persistence() -> PersistenceContainer:
    return current_app.extensions["persistence"]
