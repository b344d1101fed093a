"""core's task events as a test of a service that follows them needs them: the catalog's classes
(as core builds them), with what the test does not care about filled in."""

from __future__ import annotations

from typing import Any

from shared.events.catalog import (
    AttemptMetrics,
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskEvent,
    TaskFailed,
    TaskOutcome,
    TaskRetried,
    TaskStarted,
)
from shared.testing.fixtures import DEFAULT_BRAND

CREATED_AT = "2026-06-01T12:00:00.000Z"


def task_created(pk: int, **fields: Any) -> TaskCreated:
    """core's task.created of task `pk`; `fields` replace the defaults."""
    values: dict[str, Any] = {
        "id": pk,
        "task_id": f"task_{pk:012x}",
        "task_type": "example.noop",
        "status": "pending",
        "priority": "normal",
        "queue_name": "normal",
        "brand": DEFAULT_BRAND,
        "created_by": {"id": "1", "username": "martin"},
        "created_at": CREATED_AT,
        "updated_at": CREATED_AT,
        "context_data": {},
        "max_retries": 3,
        "timeout_minutes": 60,
    }
    return TaskCreated(**(values | fields))


# what each event needs beyond the task's ids (an outcome also gets the task's summary)
_OUTCOME: dict[str, Any] = {
    "attempt": 1,
    "task_type": "example.noop",
    "priority": "normal",
    "retry_count": 0,
    "max_retries": 3,
}
_DEFAULTS: dict[type, dict[str, Any]] = {
    TaskStarted: {"attempt": 1, "worker_name": "w1", "started_at": "2026-06-01T12:01:00.000Z"},
    TaskCompleted: {"result_data": {}},
    TaskFailed: {"error_message": "boom", "will_retry": False},
    TaskCancelled: {"previous_status": "running"},
    TaskRetried: {"retry_count": 1, "reason": "manual"},
}


def task_event(event_type: type[TaskEvent], pk: int, task_id: str | None = None, **fields: Any) -> TaskEvent:
    """core's event `event_type` about task `pk`, its required fields filled in."""
    values: dict[str, Any] = {"id": pk, "task_id": task_id or f"task_{pk:012x}"}
    if issubclass(event_type, TaskOutcome):
        values |= _OUTCOME | {"metrics": AttemptMetrics()}
    return event_type(**(values | _DEFAULTS.get(event_type, {}) | fields))
