"""scheduling's composition root: everything a scheduling process is made of, built once per
process. The clock is injected so that tests move time instead of waiting for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app

from shared.config import Settings, env_float, env_int
from shared.core_client import core_url
from shared.events.bus import EventBus
from shared.events.envelope import utcnow
from shared.events.inbox_consumer import InboxConsumer
from shared.machine_identity import CANCEL_RUN, SCHEDULE_RUN, SCHEDULING, MachineIssuer, machine_issuer
from shared.service_container import ServiceContainer
from shared.service_context import ServiceContext, make_bus

from . import read_model
from .core_client import CoreClient
from .firing import FiringPolicy
from .models import Base

Clock = Callable[[], datetime]


@dataclass
class SchedulingContainer(ServiceContainer):
    """Its background process is the messaging loops and the consumer; the scheduler is a
    process of its own (scheduler.py)."""

    core: CoreClient
    policy: FiringPolicy
    clock: Clock = utcnow
    issuer: MachineIssuer | None = None

    def now(self) -> datetime:
        return self.clock()

    def cancel_token(self, brand_id: int, task_pk: int) -> str | None:
        """The scheduler's credential to cancel one task of one of its runs (overlap policy
        cancel_previous): minted for that call, so it never outlives it (no token to refresh)."""
        if self.issuer is None:
            return None
        return self.issuer.mint(CANCEL_RUN, brand_id, "machine:scheduler", 300, task=task_pk)

    def origin_token(self, brand_id: int, key: str, origin: dict[str, Any]) -> str | None:
        """What core needs to believe that a run-now task is a schedule's run (X-Schedule-Origin)."""
        if self.issuer is None:
            return None
        return self.issuer.mint(SCHEDULE_RUN, brand_id, "machine:scheduling", 300, key=key, origin=origin)

    def consumers(self) -> list[InboxConsumer]:
        """core's task events of periodic tasks only (created and the outcomes), a batch at a
        time (read_model.py)."""
        consumer = self.ctx.inbox_consumer(
            "scheduling",
            {},
            batch_handlers=read_model.batch_handlers(),
            filtered=read_model.FILTERED,
            retired=read_model.RETIRED_BINDINGS,
            read_model=True,
        )
        return [consumer]


def bootstrap(
    settings: Settings, bus: EventBus | None = None, clock: Clock | None = None
) -> SchedulingContainer:
    ctx = ServiceContext(settings, Base.metadata, bus or make_bus(settings))
    return SchedulingContainer(
        ctx=ctx,
        core=CoreClient(core_url(settings), timeout=env_float(settings, "TASKHUB_CORE_TIMEOUT_SECONDS", 5.0)),
        policy=FiringPolicy(
            misfire_grace=timedelta(
                seconds=env_float(settings, "TASKHUB_SCHEDULER_MISFIRE_GRACE_SECONDS", 30)
            ),
            batch_size=env_int(settings, "TASKHUB_SCHEDULER_BATCH_SIZE", 500),
            lookahead=timedelta(seconds=env_float(settings, "TASKHUB_SCHEDULER_LOOKAHEAD_SECONDS", 10)),
        ),
        clock=clock or utcnow,
        issuer=machine_issuer(settings, SCHEDULING),
    )


def scheduling() -> SchedulingContainer:
    return current_app.extensions["scheduling"]
