"""The events monitoring consumes, and what each does."""

from __future__ import annotations

from shared.events.inbox_consumer import EventHandler

from . import read_model
from .metrics import service as metrics
from .workers import service as workers


def event_handlers() -> dict[str, EventHandler]:
    return {
        "task.created": read_model.on_created,
        "task.updated": read_model.on_updated,
        "task.started": read_model.on_started,
        "task.completed": metrics.record_attempt,
        "task.failed": metrics.record_attempt,
        "task.cancelled": read_model.on_cancelled,
        "task.retried": read_model.on_retried,
        "task.deleted": metrics.on_task_deleted,
        "worker.heartbeat": workers.on_heartbeat,
    }
