"""persistence's composition root: everything a persistence process is made of, built once."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from shared.background import Loop, every
from shared.config import Settings, env_float, env_int
from shared.events.bus import EventBus
from shared.events.inbox_consumer import InboxConsumer
from shared.service_context import ServiceContext, make_bus
from shared.unit_of_work import UnitOfWork

from .jobs import service as jobs
from .jobs.schemas import AutoResumeSchema
from .models import Base
from .read_model import read_model_handlers


@dataclass
class PersistenceContainer:
    ctx: ServiceContext
    auto_resume_seconds: float  # 0: no periodic auto-resume
    auto_resume_max_per_job: int

    @property
    def bus(self) -> EventBus:
        return self.ctx.bus

    @property
    def session_factory(self) -> sessionmaker[Session]:
        return self.ctx.session_factory

    def uow(self) -> UnitOfWork:
        return self.ctx.uow()

    def consumers(self) -> list[InboxConsumer]:
        return [self.ctx.inbox_consumer("persistence", read_model_handlers())]

    def background_loops(self) -> list[Loop]:
        loops = self.ctx.messaging_loops()
        for consumer in self.consumers():
            subscription = consumer.subscription(self.bus, f"persistence.{consumer.name}")
            loops.append(Loop(f"persistence.consumer.{consumer.name}", subscription.run))
        if self.auto_resume_seconds > 0:
            loops.append(every("persistence.auto-resume", self.auto_resume_seconds, self.auto_resume))
        return loops

    def auto_resume(self) -> dict:
        """The periodic pass: every brand, the default criteria of POST auto-resume/."""
        options = AutoResumeSchema().load({"max_jobs": 100})
        return jobs.auto_resume(self.uow, None, options, self.auto_resume_max_per_job)


def bootstrap(settings: Settings, bus: EventBus | None = None) -> PersistenceContainer:
    ctx = ServiceContext(settings, Base.metadata, bus or make_bus(settings))
    return PersistenceContainer(
        ctx=ctx,
        auto_resume_seconds=env_float(settings, "TASKHUB_AUTO_RESUME_SECONDS", 60),
        auto_resume_max_per_job=env_int(settings, "TASKHUB_AUTO_RESUME_MAX_PER_JOB", 3),
    )


def persistence() -> PersistenceContainer:
    return current_app.extensions["persistence"]
