"""core's composition root: everything a core process is made of, built once per process."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app

from shared.background import Loop, every
from shared.config import Settings, env_bool, env_float, env_int
from shared.events.bus import EventBus
from shared.events.inbox_consumer import InboxConsumer
from shared.events.outbox_relay import OutboxRelay
from shared.service_context import ServiceContext, make_bus

from . import attempt_credentials, execution
from .models import Base
from .read_model import read_model_handlers
from .task_types import TaskTypeRegistry


@dataclass
class CoreContainer:
    ctx: ServiceContext
    registry: TaskTypeRegistry
    policy: execution.ExecutionPolicy
    strict_types: bool
    dispatch_interval: float = 0.2
    consumer_threads: int = 1
    loops_extra: list[Loop] = field(default_factory=list)

    @property
    def bus(self) -> EventBus:
        return self.ctx.bus

    @property
    def session_factory(self):  # type: ignore[no-untyped-def]
        return self.ctx.session_factory

    def uow(self):  # type: ignore[no-untyped-def]
        return self.ctx.uow()

    def consumers(self) -> list[InboxConsumer]:
        handlers = {**execution.execution_handlers(self.policy), **read_model_handlers(self.registry)}
        return [self.ctx.inbox_consumer("core", handlers)]

    def background_loops(self) -> list[Loop]:
        relay = OutboxRelay(self.ctx.engine, self.ctx.outbox, self.bus, "core", wakeup=self.ctx.wakeup)
        loops = [Loop("core.relay", relay.run)]
        # competing consumers on PostgreSQL are possible (handlers lock the task row and check the
        # attempt, so events about one task may be applied by different threads in any order), but
        # one thread applying batches outruns them: threads holding batches lock tasks in
        # different orders and deadlock, and each deadlock re-applies a batch one event at a time
        # (SQLite: one writer)
        threads = 1 if self.ctx.engine.dialect.name == "sqlite" else self.consumer_threads
        for consumer in self.consumers():
            for index in range(threads):
                subscription = consumer.subscription(self.bus, f"core.{consumer.name}")
                loops.append(Loop(f"core.consumer.{consumer.name}.{index}", subscription.run))
        loops.append(every("core.dispatcher", self.dispatch_interval, self._dispatch_due))
        loops.append(every("core.lease-reaper", 1.0, self._reap))
        return loops + self.loops_extra

    def _dispatch_due(self) -> None:
        with self.uow() as uow:
            if execution.dispatch_due(uow, self.registry.live_types()):
                uow.commit()

    def _reap(self) -> None:
        with self.uow() as uow:
            if execution.reap_expired_leases(uow, self.policy):
                uow.commit()


def bootstrap(settings: Settings, bus: EventBus | None = None) -> CoreContainer:
    attempt_credentials.install(settings)
    ctx = ServiceContext(settings, Base.metadata, bus or make_bus(settings))
    return CoreContainer(
        ctx=ctx,
        registry=TaskTypeRegistry(
            ctx.session_factory, env_float(settings, "TASKHUB_WORKER_ONLINE_SECONDS", 30)
        ),
        policy=execution.ExecutionPolicy(
            lease_seconds=env_float(settings, "TASKHUB_LEASE_SECONDS", 30),
            max_lost_deliveries=env_int(settings, "TASKHUB_MAX_LOST_DELIVERIES", 3),
        ),
        strict_types=env_bool(settings, "TASKHUB_STRICT_TASK_TYPES", False),
        consumer_threads=env_int(settings, "TASKHUB_CONSUMER_THREADS", 1),
    )


def core() -> CoreContainer:
    return current_app.extensions["core"]
