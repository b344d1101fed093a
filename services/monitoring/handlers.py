"""The events monitoring consumes: core's public task events and the workers' heartbeats. Every
one goes to the same batch handler, so a consumer batch is applied in one go, set-based: the task
events by task_events.apply, the heartbeats by workers.record_heartbeats (they touch other tables,
so their order relative to the task events does not matter)."""

from __future__ import annotations

from collections.abc import Sequence

from shared.events.catalog import (
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskDeleted,
    TaskFailed,
    TaskRetried,
    TaskStarted,
    TaskUpdated,
    WorkerHeartbeat,
)
from shared.events.envelope import Envelope
from shared.events.inbox_consumer import BatchEventHandler
from shared.unit_of_work import UnitOfWork

from . import task_events
from .workers import service as workers

TASK_EVENTS = (
    TaskCreated,
    TaskUpdated,
    TaskStarted,
    TaskCompleted,
    TaskFailed,
    TaskRetried,
    TaskCancelled,
    TaskDeleted,
)


def apply_batch(uow: UnitOfWork, envelopes: Sequence[Envelope]) -> None:
    heartbeats = [e for e in envelopes if e.event_type == WorkerHeartbeat.event_type]
    tasks = [e for e in envelopes if e.event_type != WorkerHeartbeat.event_type]
    if tasks:
        task_events.apply(uow, tasks)
    if heartbeats:
        workers.record_heartbeats(uow, heartbeats)


def batch_handlers() -> dict[str, BatchEventHandler]:
    return {cls.event_type: apply_batch for cls in (*TASK_EVENTS, WorkerHeartbeat)}
